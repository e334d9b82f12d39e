// fw_backoff.h — jittered exponential backoff for reconnecting (docs/device-protocol.md,
// "Reconnecting"). Plain C++, tested on a PC in ../host_test.
//
//   delay = min(cap, base * 2^attempt)
//   wait a random time between delay/2 and delay; attempt += 1
//
// The jitter spreads a fleet's reconnects after an outage so that thousands of devices
// do not knock on the server in the same second. The caller resets the attempt count
// after a connection that stayed up for a minute.
#pragma once

#include <stdint.h>

namespace fw {

class Backoff {
 public:
  Backoff(uint32_t baseMs, uint32_t capMs) : baseMs_(baseMs), capMs_(capMs) {}

  // The wait before the next attempt, in ms. `random32` is any uniformly random
  // 32-bit number (esp_random() on the ESP32).
  uint32_t next(uint32_t random32) {
    uint64_t delay = baseMs_;
    for (uint8_t i = 0; i < attempt_ && delay < capMs_; ++i) delay *= 2;
    if (delay > capMs_) delay = capMs_;
    if (attempt_ < 255) ++attempt_;
    const uint32_t half = static_cast<uint32_t>(delay / 2);
    const uint32_t span = static_cast<uint32_t>(delay) - half;  // [delay/2, delay]
    return half + (span ? random32 % (span + 1) : 0);
  }

  // Start again from the shortest wait.
  void reset() { attempt_ = 0; }

  // Skip the shortest waits: the next one is at least base * 2^attempt / 2.
  void atLeast(uint8_t attempt) {
    if (attempt_ < attempt) attempt_ = attempt;
  }

  uint8_t attempt() const { return attempt_; }

 private:
  uint32_t baseMs_;
  uint32_t capMs_;
  uint8_t attempt_ = 0;
};

// A long wait with ±20 % jitter, for refusals that will not fix themselves (an HTTP 403
// handshake: the token is unknown, revoked or expired, or the device is retired).
inline uint32_t jittered(uint32_t ms, uint32_t random32) {
  const uint32_t spread = ms / 5;
  if (spread == 0) return ms;
  return ms - spread + random32 % (2 * spread + 1);
}

}  // namespace fw
