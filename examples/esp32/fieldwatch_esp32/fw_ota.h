// fw_ota.h — the plain C++ parts of taking a firmware update (no Arduino needed, so
// host_test/test_logic.cpp can test them):
//   * Content-Range parsing (does a 206 continue where our download stopped?),
//   * the progress gate (a "downloading" report every second or every 10 %, not per chunk),
//   * the SHA-256 comparison with the hex digest of the update message,
//   * the resume checkpoint (a whole flash sector),
//   * the canonical manifest: the exact bytes an Ed25519 signature covers, as the server
//     writes them (json.dumps(manifest, sort_keys=True, separators=(",", ":"),
//     ensure_ascii=False)).
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace fw {

// "bytes 4096-1048575/1048576" -> start 4096, total 1048576. False for anything else
// ("bytes */1048576", a missing header, garbage).
inline bool parseContentRange(const char* header, uint32_t* start, uint32_t* total) {
  if (header == nullptr || strncmp(header, "bytes ", 6) != 0) return false;
  const char* p = header + 6;
  char* end = nullptr;
  const unsigned long first = strtoul(p, &end, 10);
  if (end == p || *end != '-') return false;
  p = end + 1;
  const unsigned long last = strtoul(p, &end, 10);
  if (end == p || *end != '/' || last < first) return false;
  p = end + 1;
  const unsigned long all = strtoul(p, &end, 10);
  if (end == p || *end != '\0' || last >= all) return false;
  *start = (uint32_t)first;
  *total = (uint32_t)all;
  return true;
}

// When to send a "downloading" report: the first bytes, then after `everyMs` or a tenth
// of the image more, whichever comes first.
class ProgressGate {
 public:
  explicit ProgressGate(uint32_t everyMs = 1000) : everyMs_(everyMs) {}
  void reset() { started_ = false; }
  bool due(uint32_t nowMs, uint32_t bytes, uint32_t size) {
    const uint32_t step = size / 10;
    if (started_ && nowMs - lastMs_ < everyMs_ && (step == 0 || bytes - lastBytes_ < step)) {
      return false;
    }
    started_ = true;
    lastMs_ = nowMs;
    lastBytes_ = bytes;
    return true;
  }

 private:
  uint32_t everyMs_;
  bool started_ = false;
  uint32_t lastMs_ = 0;
  uint32_t lastBytes_ = 0;
};

// The 32 digest bytes against the message's 64 hex digits (either case).
inline bool digestMatches(const uint8_t digest[32], const char* hex) {
  if (hex == nullptr || strlen(hex) != 64) return false;
  static const char* kDigits = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) {
    for (int half = 0; half < 2; ++half) {
      char c = hex[2 * i + half];
      if (c >= 'A' && c <= 'F') c = (char)(c - 'A' + 'a');
      const uint8_t nibble = half == 0 ? digest[i] >> 4 : digest[i] & 0x0F;
      if (c != kDigits[nibble]) return false;
    }
  }
  return true;
}

// After a restart the download continues from the last whole flash sector written (what
// is beyond it may not have reached the flash).
inline uint32_t resumeCheckpoint(uint32_t written, uint32_t sector = 4096) {
  return written - written % sector;
}

// -- the canonical manifest --------------------------------------------------------------

const int kMaxListed = 8;

struct Manifest {
  const char* sha256 = "";
  uint32_t size = 0;
  const char* version = "";
  const char* deviceTypes[kMaxListed] = {};
  int deviceTypeCount = 0;
  const char* hardwareVersions[kMaxListed] = {};
  int hardwareVersionCount = 0;
  long securityVersion = 0;
};

// Appends to a fixed buffer; `overflow` once it did not fit.
class Writer {
 public:
  Writer(char* out, size_t cap) : out_(out), cap_(cap) {
    if (cap_ > 0) out_[0] = '\0';
  }
  void raw(const char* text) {
    for (; *text; ++text) put(*text);
  }
  // A JSON string as Python's json.dumps(ensure_ascii=False) writes it: UTF-8 kept,
  // quote and backslash escaped, control characters as \n \r \t \b \f or \u00XX.
  void string(const char* text) {
    put('"');
    for (const unsigned char* p = (const unsigned char*)text; *p; ++p) {
      const unsigned char c = *p;
      if (c == '"' || c == '\\') {
        put('\\');
        put((char)c);
      } else if (c < 0x20) {
        const char* shortForm = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                              : c == '\b' ? "\\b" : c == '\f' ? "\\f" : nullptr;
        if (shortForm != nullptr) {
          raw(shortForm);
        } else {
          char escaped[8];
          snprintf(escaped, sizeof(escaped), "\\u%04x", (unsigned)c);
          raw(escaped);
        }
      } else {
        put((char)c);
      }
    }
    put('"');
  }
  void number(long value) {
    char text[24];
    snprintf(text, sizeof(text), "%ld", value);
    raw(text);
  }
  void list(const char* const* items, int count) {
    put('[');
    for (int i = 0; i < count; ++i) {
      if (i) put(',');
      string(items[i]);
    }
    put(']');
  }
  bool overflow() const { return overflow_; }
  size_t length() const { return len_; }

 private:
  void put(char c) {
    if (len_ + 1 >= cap_) {
      overflow_ = true;
      return;
    }
    out_[len_++] = c;
    out_[len_] = '\0';
  }
  char* out_;
  size_t cap_;
  size_t len_ = 0;
  bool overflow_ = false;
};

// The bytes the signature covers, keys in sorted order, no spaces. Returns the length,
// 0 when `cap` is too small.
inline size_t canonicalManifest(const Manifest& m, char* out, size_t cap) {
  Writer w(out, cap);
  w.raw("{\"device_types\":");
  w.list(m.deviceTypes, m.deviceTypeCount);
  w.raw(",\"hardware_versions\":");
  w.list(m.hardwareVersions, m.hardwareVersionCount);
  w.raw(",\"security_version\":");
  w.number(m.securityVersion);
  w.raw(",\"sha256\":");
  w.string(m.sha256);
  w.raw(",\"size\":");
  w.number((long)m.size);
  w.raw(",\"version\":");
  w.string(m.version);
  w.raw("}");
  return w.overflow() ? 0 : w.length();
}

}  // namespace fw
