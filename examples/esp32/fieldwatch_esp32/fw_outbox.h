// fw_outbox.h — telemetry samples waiting for their ack.
//
// Protocol rules (docs/device-protocol.md):
//   * the server acks a frame only once its readings are committed: until then the
//     device keeps the frame;
//   * no ack within about 10 s: resend the same frame (same id, same timestamp), up to
//     max_retry_attempts times, then reconnect;
//   * resending is safe because readings are unique on (metric, timestamp): a frame
//     that was in fact stored acks with "duplicates" instead of being stored twice;
//   * readings taken while disconnected are kept and sent, with their original
//     timestamps, once connected again.
//
// A sample is kept as numbers, not as JSON text, and serialized each time it is sent.
// The buffer lives in RAM: a restart loses what was not acked. Plain C++, tested on a
// PC in ../host_test.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace fw {

struct Sample {
  uint32_t seq;          // 0: free slot. The frame id is "t-<seq>".
  int64_t timestampMs;   // when it was measured (epoch ms, UTC)
  float chipTemperature; // celsius; NAN when the chip has no sensor
  float humidity;        // percent (simulated in this sketch)
  int16_t rssi;          // dBm
  uint8_t sends;         // how often it was sent, over all connections
  bool inFlight;         // sent on the current connection, ack pending
  bool held;             // not to be sent before notBeforeMs
  uint32_t sentAtMs;     // millis() of the last send
  uint32_t notBeforeMs;  // millis() before which it is not resent (when held)
};

// What Outbox::step() decided.
struct OutboxStep {
  Sample* send = nullptr;  // send this one now, then call markSent()
  uint32_t gaveUpSeq = 0;  // this one was dropped: sent too often
  bool reconnect = false;  // ...and its ack never came: reconnect
};

template <size_t N>
class Outbox {
 public:
  using Step = OutboxStep;

  // Adds a sample. When the buffer is full the oldest sample is dropped and its seq
  // is written to *droppedSeq (0 otherwise).
  Sample* add(int64_t timestampMs, float chipTemperature, float humidity, int16_t rssi,
              uint32_t* droppedSeq) {
    *droppedSeq = 0;
    Sample* slot = nullptr;
    for (size_t i = 0; i < N && slot == nullptr; ++i) {
      if (items_[i].seq == 0) slot = &items_[i];
    }
    if (slot == nullptr) {
      slot = oldest(false, 0);
      *droppedSeq = slot->seq;
    }
    *slot = Sample{};
    slot->seq = nextSeq_++;
    if (nextSeq_ == 0) nextSeq_ = 1;
    slot->timestampMs = timestampMs;
    slot->chipTemperature = chipTemperature;
    slot->humidity = humidity;
    slot->rssi = rssi;
    return slot;
  }

  Sample* find(uint32_t seq) {
    if (seq == 0) return nullptr;
    for (size_t i = 0; i < N; ++i) {
      if (items_[i].seq == seq) return &items_[i];
    }
    return nullptr;
  }

  // The ack came (or the server refused the frame for good): forget the sample.
  bool remove(uint32_t seq) {
    Sample* s = find(seq);
    if (s == nullptr) return false;
    *s = Sample{};
    return true;
  }

  // The server asked to slow down (error "rate_limited" or "overloaded"): resend the
  // sample, but not before delayMs.
  void holdOff(uint32_t seq, uint32_t nowMs, uint32_t delayMs) {
    Sample* s = find(seq);
    if (s == nullptr) return;
    s->inFlight = false;
    s->held = true;
    s->notBeforeMs = nowMs + delayMs;
  }

  // The connection closed: no ack can come for what was in flight. It is sent again
  // on the next connection (and that counts as a resend).
  void connectionLost() {
    for (size_t i = 0; i < N; ++i) items_[i].inFlight = false;
  }

  void markSent(Sample* s, uint32_t nowMs) {
    if (s->sends < 255) ++s->sends;
    s->inFlight = true;
    s->held = false;
    s->sentAtMs = nowMs;
  }

  // What to do next. Call it repeatedly (a few times per loop) while it returns
  // something to send. A sample may be sent 1 + maxRetries times in all.
  Step step(uint32_t nowMs, uint32_t ackTimeoutMs, uint8_t maxRetries, size_t maxInFlight) {
    Step out;
    // 1. Overdue acks: due for a resend, or given up (then the link is suspect).
    for (size_t i = 0; i < N; ++i) {
      Sample& s = items_[i];
      if (s.seq == 0 || !s.inFlight || nowMs - s.sentAtMs < ackTimeoutMs) continue;
      if (s.sends > maxRetries) {
        out.gaveUpSeq = s.seq;
        out.reconnect = true;
        s = Sample{};
        return out;
      }
      s.inFlight = false;
    }
    // 2. Keep the number of unacked frames on the wire small.
    if (inFlight() >= maxInFlight) return out;
    // 3. The oldest sample that is due.
    Sample* next = oldest(true, nowMs);
    if (next == nullptr) return out;
    if (next->sends > maxRetries) {  // sent often enough on earlier connections
      out.gaveUpSeq = next->seq;
      *next = Sample{};
      return out;
    }
    out.send = next;
    return out;
  }

  size_t size() const {
    size_t n = 0;
    for (size_t i = 0; i < N; ++i) n += items_[i].seq != 0;
    return n;
  }

  size_t inFlight() const {
    size_t n = 0;
    for (size_t i = 0; i < N; ++i) n += items_[i].seq != 0 && items_[i].inFlight;
    return n;
  }

 private:
  // The sample with the lowest seq; with onlyDue, among those not in flight and not
  // held past nowMs.
  Sample* oldest(bool onlyDue, uint32_t nowMs) {
    Sample* best = nullptr;
    for (size_t i = 0; i < N; ++i) {
      Sample& s = items_[i];
      if (s.seq == 0) continue;
      if (onlyDue && (s.inFlight || (s.held && static_cast<int32_t>(nowMs - s.notBeforeMs) < 0))) {
        continue;
      }
      if (best == nullptr || s.seq < best->seq) best = &s;
    }
    return best;
  }

  Sample items_[N] = {};
  uint32_t nextSeq_ = 1;
};

}  // namespace fw
