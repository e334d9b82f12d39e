// Host-side tests of the sketch's plain C++ parts (no Arduino needed):
//   fw_time.h, fw_backoff.h, fw_commands.h, fw_outbox.h, fw_ota.h
//
//   g++ -std=c++17 -Wall -Wextra -Werror -I../fieldwatch_esp32 test_logic.cpp -o /tmp/fw_test && /tmp/fw_test
//
// The Arduino-dependent parts (fieldwatch_esp32.ino, fw_socket.h) are not covered here.
#include <math.h>
#include <stdio.h>
#include <ctype.h>
#include <string.h>

#include "fw_backoff.h"
#include "fw_commands.h"
#include "fw_ota.h"
#include "fw_outbox.h"
#include "fw_time.h"

static int passed = 0, failed = 0;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (cond) {                                                       \
      ++passed;                                                       \
    } else {                                                          \
      ++failed;                                                       \
      printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
    }                                                                 \
  } while (0)

static void testTime() {
  int64_t ms = 0;
  CHECK(fw::parseIso8601("1970-01-01T00:00:00Z", &ms) && ms == 0);
  CHECK(fw::parseIso8601("2026-11-22T12:00:00Z", &ms) && ms == 1795348800000LL);
  // What the server sends: Python's isoformat(), six fraction digits and +00:00.
  CHECK(fw::parseIso8601("2026-11-22T12:00:00.123456+00:00", &ms) && ms == 1795348800123LL);
  CHECK(fw::parseIso8601("2026-11-22T13:30:00+01:30", &ms) && ms == 1795348800000LL);
  CHECK(fw::parseIso8601("2026-11-22T06:00:00-06:00", &ms) && ms == 1795348800000LL);
  CHECK(fw::parseIso8601("2026-11-22T12:00:00.5Z", &ms) && ms == 1795348800500LL);
  CHECK(fw::parseIso8601("2024-02-29T00:00:00Z", &ms) && ms == 1709164800000LL);
  CHECK(!fw::parseIso8601("2026-11-22T12:00:00", &ms));   // no zone
  CHECK(!fw::parseIso8601("2025-02-29T00:00:00Z", &ms));  // not a leap year
  CHECK(!fw::parseIso8601("2026-13-01T00:00:00Z", &ms));
  CHECK(!fw::parseIso8601("2026-11-22T12:00:00.Z", &ms));
  CHECK(!fw::parseIso8601("2026-11-22T12:00:00Zjunk", &ms));
  CHECK(!fw::parseIso8601("", &ms));
  CHECK(!fw::parseIso8601(nullptr, &ms));

  char buf[25];
  fw::formatIso8601(0, buf);
  CHECK(strcmp(buf, "1970-01-01T00:00:00.000Z") == 0);
  fw::formatIso8601(1795348800123LL, buf);
  CHECK(strcmp(buf, "2026-11-22T12:00:00.123Z") == 0);
  fw::formatIso8601(1709251199999LL, buf);
  CHECK(strcmp(buf, "2024-02-29T23:59:59.999Z") == 0);

  // Round trip over a range of days, leap years and centuries included.
  bool roundTrip = true;
  for (int64_t t = 0; t < 4102444800000LL; t += 86400000LL * 37 + 3723004) {
    fw::formatIso8601(t, buf);
    int64_t back = -1;
    if (!fw::parseIso8601(buf, &back) || back != t) {
      roundTrip = false;
      printf("  round trip failed at %lld (%s)\n", static_cast<long long>(t), buf);
      break;
    }
  }
  CHECK(roundTrip);
}

static void testBackoff() {
  fw::Backoff b(1000, 300000);
  // Lowest random value: half the delay; highest: the whole delay.
  CHECK(b.next(0) == 500);         // attempt 0: delay 1 s
  CHECK(b.next(0) == 1000);        // attempt 1: 2 s
  CHECK(b.next(0xFFFFFFFF) <= 4000);
  for (int i = 0; i < 20; ++i) b.next(12345);
  const uint32_t capped = b.next(0);
  CHECK(capped == 150000);         // the cap: 300 s, so at least 150 s
  bool inRange = true;
  for (uint32_t r = 0; r < 100000; r += 7) {
    const uint32_t d = b.next(r * 2654435761u);
    inRange = inRange && d >= 150000 && d <= 300000;
  }
  CHECK(inRange);
  b.reset();
  CHECK(b.next(0) == 500);
  b.reset();
  b.atLeast(3);
  CHECK(b.next(0) == 4000);        // 8 s delay, 4 s minimum
  CHECK(fw::jittered(600000, 0) == 480000);
  CHECK(fw::jittered(600000, 240000) == 720000);
}

static void testCommands() {
  static fw::CommandLedger ledger;  // static: it is a few KB
  ledger.clear();
  CHECK(ledger.valid());
  CHECK(ledger.find("a") == nullptr);

  fw::CommandRecord* r = ledger.remember("0b6f7c1e-3c1a-4c55-9a55-7f3f0e0c7d10");
  CHECK(r != nullptr && r->state == fw::kCommandRunning);
  CHECK(ledger.find("0b6f7c1e-3c1a-4c55-9a55-7f3f0e0c7d10") == r);
  fw::CommandLedger::finish(r, true, "{\"pong\":true}");
  CHECK(r->state == fw::kCommandCompleted && strcmp(r->result, "{\"pong\":true}") == 0);
  CHECK(strcmp(fw::commandStatusName(r->state), "completed") == 0);

  // Ids that cannot be remembered.
  char longId[80];
  memset(longId, 'x', sizeof(longId) - 1);
  longId[sizeof(longId) - 1] = '\0';
  CHECK(ledger.remember(longId) == nullptr);
  CHECK(ledger.remember("") == nullptr);
  CHECK(ledger.remember(nullptr) == nullptr);

  // The ring keeps the last 16: the 17th new id evicts the first.
  ledger.clear();
  char id[16];
  for (int i = 0; i < 17; ++i) {
    snprintf(id, sizeof(id), "cmd-%d", i);
    ledger.remember(id);
  }
  CHECK(ledger.find("cmd-0") == nullptr);
  CHECK(ledger.find("cmd-1") != nullptr);
  CHECK(ledger.find("cmd-16") != nullptr);

  // A too long result is not stored whole.
  char big[300];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  fw::CommandRecord* b = ledger.find("cmd-16");
  fw::CommandLedger::finish(b, false, big);
  CHECK(b->state == fw::kCommandFailed && strlen(b->result) < fw::kCommandResultMax);

  // After a restart, running commands become failed ones.
  CHECK(ledger.failInterrupted() == 15);  // cmd-1..cmd-15 were still running
  CHECK(ledger.find("cmd-3")->state == fw::kCommandFailed);
  CHECK(strstr(ledger.find("cmd-3")->result, "interrupted") != nullptr);

  // A saved ledger survives a byte copy (that is what the NVS blob is).
  static fw::CommandLedger copy;
  memcpy(&copy, &ledger, sizeof(ledger));
  CHECK(copy.valid() && copy.find("cmd-16") != nullptr);
  copy.magic = 0;
  CHECK(!copy.valid());
}

static void testOutbox() {
  fw::Outbox<4> box;
  uint32_t dropped = 1;
  fw::Sample* a = box.add(1000, 40.0f, 45.0f, -60, &dropped);
  CHECK(a->seq == 1 && dropped == 0);
  box.add(2000, 40.1f, 45.1f, -61, &dropped);
  CHECK(box.size() == 2);

  // Oldest first, at most maxInFlight unacked.
  auto st = box.step(0, 10000, 3, 1);
  CHECK(st.send != nullptr && st.send->seq == 1);
  box.markSent(st.send, 0);
  st = box.step(100, 10000, 3, 1);
  CHECK(st.send == nullptr);  // one in flight already
  st = box.step(100, 10000, 3, 8);
  CHECK(st.send != nullptr && st.send->seq == 2);
  box.markSent(st.send, 100);

  // The ack for 1 arrives.
  CHECK(box.remove(1));
  CHECK(!box.remove(1));
  CHECK(box.size() == 1);

  // No ack for 2: resent after the timeout, 3 times, then given up with a reconnect.
  uint32_t now = 100;
  int resends = 0;
  bool gaveUp = false;
  for (int i = 0; i < 10 && !gaveUp; ++i) {
    now += 10000;
    st = box.step(now, 10000, 3, 8);
    if (st.send) {
      CHECK(st.send->seq == 2);
      box.markSent(st.send, now);
      ++resends;
    } else if (st.gaveUpSeq) {
      CHECK(st.gaveUpSeq == 2 && st.reconnect);
      gaveUp = true;
    }
  }
  CHECK(resends == 3 && gaveUp && box.size() == 0);

  // A full buffer drops the oldest sample.
  for (int i = 0; i < 4; ++i) box.add(3000 + i, 0, 0, 0, &dropped);
  CHECK(dropped == 0 && box.size() == 4);
  box.add(9000, 0, 0, 0, &dropped);
  CHECK(dropped == 3 && box.size() == 4 && box.find(3) == nullptr);

  // Connection lost: what was in flight is due again at once, counting as a resend.
  fw::Outbox<4> box2;
  box2.add(1, 0, 0, 0, &dropped);
  st = box2.step(0, 10000, 1, 8);
  box2.markSent(st.send, 0);
  box2.connectionLost();
  st = box2.step(5, 10000, 1, 8);
  CHECK(st.send != nullptr && st.send->seq == 1);
  box2.markSent(st.send, 5);  // second and last send (max_retry_attempts = 1)
  box2.connectionLost();
  st = box2.step(10, 10000, 1, 8);
  CHECK(st.send == nullptr && st.gaveUpSeq == 1 && !st.reconnect);

  // rate_limited / overloaded: held back, then sent again.
  fw::Outbox<4> box3;
  box3.add(1, 0, 0, 0, &dropped);
  st = box3.step(0, 10000, 3, 8);
  box3.markSent(st.send, 0);
  box3.holdOff(1, 0, 2000);
  CHECK(box3.step(1000, 10000, 3, 8).send == nullptr);
  st = box3.step(2000, 10000, 3, 8);
  CHECK(st.send != nullptr && st.send->seq == 1);

  // millis() wraps after 49 days: the timeouts still work across it.
  fw::Outbox<2> box4;
  box4.add(1, 0, 0, 0, &dropped);
  st = box4.step(0xFFFFF000u, 10000, 3, 8);
  box4.markSent(st.send, 0xFFFFF000u);
  CHECK(box4.step(0x00000100u, 10000, 3, 8).send == nullptr);  // 4.3 s later
  CHECK(box4.step(0x00002000u, 10000, 3, 8).send != nullptr);  // 12 s later
}

static void testOta() {
  uint32_t start = 0, total = 0;
  CHECK(fw::parseContentRange("bytes 4096-1048575/1048576", &start, &total));
  CHECK(start == 4096 && total == 1048576);
  CHECK(fw::parseContentRange("bytes 0-0/1", &start, &total) && start == 0 && total == 1);
  CHECK(!fw::parseContentRange("bytes */1048576", &start, &total));
  CHECK(!fw::parseContentRange("bytes 10-5/100", &start, &total));
  CHECK(!fw::parseContentRange("bytes 10-100/100", &start, &total));  // last >= total
  CHECK(!fw::parseContentRange("bytes 10-20/100 ", &start, &total));
  CHECK(!fw::parseContentRange("items 0-1/2", &start, &total));
  CHECK(!fw::parseContentRange(nullptr, &start, &total));

  // Progress: the first report, then every second or every tenth, not per chunk.
  fw::ProgressGate gate(1000);
  int reports = 0;
  for (uint32_t bytes = 1024; bytes <= 1000000; bytes += 1024) {
    if (gate.due(5000, bytes, 1000000)) ++reports;  // all at the same moment: 10 % steps
  }
  CHECK(reports == 10);
  fw::ProgressGate slow(1000);
  CHECK(slow.due(0, 10, 1000000));
  CHECK(!slow.due(999, 20, 1000000));
  CHECK(slow.due(1000, 30, 1000000));  // a second later, however little came
  CHECK(!slow.due(1500, 40, 0));        // size unknown: by time only
  CHECK(slow.due(0x00000100u + 0xFFFFFFFFu, 50, 1000000));  // across millis() wrap

  uint8_t digest[32];
  for (int i = 0; i < 32; ++i) digest[i] = (uint8_t)(i * 7 + 1);
  char hex[65];
  for (int i = 0; i < 32; ++i) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  CHECK(fw::digestMatches(digest, hex));
  for (int i = 0; i < 64; ++i) hex[i] = (char)toupper(hex[i]);
  CHECK(fw::digestMatches(digest, hex));
  hex[63] = hex[63] == '0' ? '1' : '0';
  CHECK(!fw::digestMatches(digest, hex));
  CHECK(!fw::digestMatches(digest, "abcd"));

  CHECK(fw::resumeCheckpoint(0) == 0);
  CHECK(fw::resumeCheckpoint(4095) == 0);
  CHECK(fw::resumeCheckpoint(12289) == 12288);

  // The exact bytes Python writes for the same manifest (see fw_ota.h).
  fw::Manifest m;
  m.sha256 = "abababababababababababababababababababababababababababababababab";
  m.size = 1048576;
  m.version = "1.5.0-\xc3\xa9\"\\\n\x01";
  m.deviceTypes[0] = "esp32";
  m.deviceTypes[1] = "esp32-s3";
  m.deviceTypeCount = 2;
  m.securityVersion = 2;
  char out[512];
  const size_t n = fw::canonicalManifest(m, out, sizeof(out));
  const char* expected =
      "{\"device_types\":[\"esp32\",\"esp32-s3\"],\"hardware_versions\":[],"
      "\"security_version\":2,\"sha256\":\"abababababababababababababababab"
      "abababababababababababababababab\",\"size\":1048576,"
      "\"version\":\"1.5.0-\xc3\xa9\\\"\\\\\\n\\u0001\"}";
  CHECK(n == strlen(expected) && strcmp(out, expected) == 0);
  CHECK(fw::canonicalManifest(m, out, 40) == 0);  // too small: refused, not cut short
}

int main() {
  testTime();
  testBackoff();
  testCommands();
  testOutbox();
  testOta();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
