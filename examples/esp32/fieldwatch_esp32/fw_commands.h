// fw_commands.h — the device's memory of recent commands, for deduplication.
//
// Protocol rule: the server resends a command whose command_ack it did not get (same
// command_id, higher "attempt"). The ack may simply have been lost, so the device may
// already have run the command. The device therefore remembers the last
// kCommandSlots command ids with their outcome and, on a duplicate,
//   * answers command_ack again,
//   * answers the stored command_result again if the command has finished,
//   * never runs the command a second time.
//
// The whole ledger is a plain struct, saved as one NVS blob by the sketch after each
// change, so that a duplicate arriving after a restart (think: "reboot") is still
// recognised. Plain C++, tested on a PC in ../host_test.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace fw {

constexpr size_t kCommandIdMax = 48;       // a UUID has 36 characters
constexpr size_t kCommandResultMax = 128;  // the result object, serialized
constexpr uint8_t kCommandSlots = 16;

enum CommandState : uint8_t {
  kCommandEmpty = 0,
  kCommandRunning = 1,    // acked, not finished
  kCommandCompleted = 2,  // command_result sent with status "completed"
  kCommandFailed = 3,     // command_result sent with status "failed"
};

struct CommandRecord {
  char id[kCommandIdMax + 1];
  uint8_t state;
  char result[kCommandResultMax + 1];  // JSON object text, e.g. {"pong":true,...}
};

struct CommandLedger {
  // Changes whenever the layout changes, so that a blob saved by another firmware
  // version is discarded instead of misread.
  static constexpr uint32_t kMagic = 0x46574331;  // "FWC1"

  uint32_t magic;
  uint8_t next;  // the slot the next new command takes: the oldest one
  CommandRecord slots[kCommandSlots];

  void clear() {
    memset(this, 0, sizeof(*this));
    magic = kMagic;
  }

  bool valid() const { return magic == kMagic && next < kCommandSlots; }

  static bool idFits(const char* id) {
    return id != nullptr && id[0] != '\0' && strlen(id) <= kCommandIdMax;
  }

  CommandRecord* find(const char* id) {
    if (!idFits(id)) return nullptr;
    for (uint8_t i = 0; i < kCommandSlots; ++i) {
      if (slots[i].state != kCommandEmpty && strcmp(slots[i].id, id) == 0) return &slots[i];
    }
    return nullptr;
  }

  // Records a new command as running, forgetting the oldest one when all slots are
  // taken. Returns nullptr for an id that is empty or too long.
  CommandRecord* remember(const char* id) {
    if (!idFits(id)) return nullptr;
    CommandRecord* r = &slots[next];
    next = static_cast<uint8_t>((next + 1) % kCommandSlots);
    memset(r, 0, sizeof(*r));
    strcpy(r->id, id);  // length checked by idFits
    r->state = kCommandRunning;
    return r;
  }

  // Stores the outcome. A result too long to keep is replaced by a short note in the
  // stored copy (the first command_result carried the full one).
  static void finish(CommandRecord* r, bool ok, const char* resultJson) {
    r->state = ok ? kCommandCompleted : kCommandFailed;
    if (resultJson != nullptr && strlen(resultJson) <= kCommandResultMax) {
      strcpy(r->result, resultJson);
    } else {
      strcpy(r->result, "{\"note\":\"result too long to keep\"}");
    }
  }

  // After a restart: a command still marked running was interrupted (by a crash or a
  // power cut) and will not finish. Mark it failed so that a resend gets an answer.
  uint8_t failInterrupted() {
    uint8_t n = 0;
    for (uint8_t i = 0; i < kCommandSlots; ++i) {
      if (slots[i].state == kCommandRunning) {
        finish(&slots[i], false, "{\"error\":\"interrupted by a restart\"}");
        ++n;
      }
    }
    return n;
  }
};

inline const char* commandStatusName(uint8_t state) {
  return state == kCommandCompleted ? "completed" : "failed";
}

}  // namespace fw
