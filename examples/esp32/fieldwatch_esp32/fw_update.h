// fw_update.h — taking a firmware update (docs/device-protocol.md, "Firmware updates"):
//
//   {"type":"firmware_update","update_id":"…","version":"1.5.0","download_path":"/api/v1/…",
//    "url":"…","sha256":"…","size":1048576,"signature":…,"signing_key":…,"manifest":{…}}
//
// 1. "acknowledged"; the job (id, version, digest, size, where to download) is saved in
//    NVS, so a restart continues it.
// 2. The image is streamed into the next OTA partition (esp_ota_begin/esp_ota_write), a
//    few KB per loop() so that the WebSocket stays served, hashed as it comes
//    (mbedtls SHA-256), "downloading" reported every second or 10 %. A dropped connection
//    is resumed with "Range: bytes=<written>-" and "If-Range" (the image's ETag), up to
//    kOtaTries times; then "failed"/"download_failed" (the server retries and resends).
// 3. SHA-256 differs: "failed"/"checksum_mismatch", the partition write is aborted.
//    Otherwise "downloaded", "verified", "installing": esp_ota_end() checks the image,
//    esp_ota_set_boot_partition() selects it ("install_failed" if either refuses).
// 4. "rebooting" (its ack awaited, 5 s at most), restart.
// 5. The new image boots "on trial" (ESP_OTA_IMG_PENDING_VERIFY, with the bootloader's
//    rollback enabled). It connects and sends its status frame with its version; only
//    when the server acknowledges THAT frame (its commit, which completes the update) is
//    the image marked valid (esp_ota_mark_app_valid_cancel_rollback). No acknowledgement
//    within FW_OTA_TRIAL_S: esp_ota_mark_app_invalid_rollback_and_reboot(), and the old
//    image comes back (the server then marks the update rolled_back).
//
// Not compiled here (see README, "What was checked here").
#pragma once

#include <Arduino.h>
#include <ArduinoJson.h>
#include <HTTPClient.h>
#include <Preferences.h>
#include <WiFiClient.h>
#include <WiFiClientSecure.h>
#include <esp_ota_ops.h>
#include <mbedtls/sha256.h>

#include "fw_ota.h"

#ifndef FW_OTA_TRIAL_S
#define FW_OTA_TRIAL_S 300
#endif
// 1: after a restart mid-download, continue from the last whole sector written instead
// of from the start. Needs esp_ota_resume(), which only recent ESP-IDF versions have
// (check your core's esp_ota_ops.h).
#ifndef FW_OTA_RESUME_AFTER_RESTART
#define FW_OTA_RESUME_AFTER_RESTART 0
#endif

namespace fw {

// Sends a frame (the sketch's sendJson); false when not connected.
typedef bool (*SendFrame)(JsonDocument& doc);

const int kOtaTries = 5;
const uint32_t kOtaChunk = 4096;
const int kOtaChunksPerLoop = 4;
const uint32_t kOtaSaveEvery = 64 * 1024;  // bytes between NVS checkpoints
const uint32_t kRebootWaitMs = 5000;

struct OtaJob {
  char updateId[48] = "";
  char version[32] = "";
  char sha256[65] = "";
  char path[160] = "";  // download_path (with the device token)
  char url[400] = "";   // the signed URL, when there is no path
  uint32_t size = 0;
  uint32_t written = 0;
};

class FirmwareUpdater {
 public:
  void begin(SendFrame send, const char* runningVersion);
  void take(JsonDocument& frame);
  void loop(uint32_t now, bool online);
  // The status frame naming our version went out with this id / an ack arrived.
  void statusSent(const char* ref) { strlcpy(statusRef_, ref, sizeof(statusRef_)); }
  void acked(const char* ref);
  bool busy() const { return state_ != kIdle; }
  bool wantsStatus() { bool w = wantsStatus_; wantsStatus_ = false; return w; }

 private:
  enum State { kIdle, kDownloading, kRebooting };

  void report(const char* state, long bytes = -1, const char* reason = nullptr,
              const char* detail = nullptr, char* refOut = nullptr);
  void fail(const char* reason, const char* detail);
  bool startWriting(uint32_t from);
  bool open(uint32_t now);
  void close() { http_.end(); open_ = false; }
  void step(uint32_t now);
  void finish();
  void retryLater(uint32_t now, const char* why, uint32_t waitMs);
  void save();
  void forget();

  SendFrame send_ = nullptr;
  const char* running_ = "";
  State state_ = kIdle;
  OtaJob job_;
  Preferences nvs_;
  HTTPClient http_;
  WiFiClient plain_;
  WiFiClientSecure secure_;
  bool open_ = false;
  const esp_partition_t* part_ = nullptr;
  esp_ota_handle_t handle_ = 0;
  mbedtls_sha256_context sha_;
  ProgressGate progress_;
  int tries_ = 0;
  uint32_t retryAt_ = 0;
  uint32_t savedAt_ = 0;
  uint32_t frames_ = 0;
  char rebootRef_[16] = "";
  bool rebootAcked_ = false;
  uint32_t rebootAt_ = 0;
  bool trial_ = false;
  uint32_t trialUntil_ = 0;
  char statusRef_[16] = "";
  bool wantsStatus_ = false;
};

// ---------------------------------------------------------------------------------------

inline void FirmwareUpdater::begin(SendFrame send, const char* runningVersion) {
  send_ = send;
  running_ = runningVersion;
  esp_ota_img_states_t state;
  const esp_partition_t* running = esp_ota_get_running_partition();
  if (esp_ota_get_state_partition(running, &state) == ESP_OK &&
      state == ESP_OTA_IMG_PENDING_VERIFY) {
    trial_ = true;  // a new image: valid only once the server acknowledged our version
    trialUntil_ = millis() + FW_OTA_TRIAL_S * 1000UL;
    Serial.printf("firmware %s on trial: waiting for the server to acknowledge it\n", running_);
  }
  nvs_.begin("fw-ota", false);
  if (nvs_.getBytes("job", &job_, sizeof(job_)) != sizeof(job_) || job_.size == 0) {
    job_ = OtaJob();
    return;
  }
  if (strcmp(job_.version, running_) == 0) {  // it was installed: nothing to continue
    forget();
    return;
  }
  uint32_t from = 0;
#if FW_OTA_RESUME_AFTER_RESTART
  from = resumeCheckpoint(job_.written);
#endif
  Serial.printf("continuing the update to %s from byte %lu\n", job_.version,
                (unsigned long)from);
  if (startWriting(from)) state_ = kDownloading;
}

inline void FirmwareUpdater::take(JsonDocument& frame) {
  const char* id = frame["update_id"] | frame["command_id"] | "";
  if (state_ != kIdle && strcmp(id, job_.updateId) == 0) return;  // a resend: working on it
  if (strcmp(frame["version"] | "", running_) == 0) {
    wantsStatus_ = true;  // already running it: our status frame completes the update
    return;
  }
  if (state_ == kDownloading) {  // another update replaces this one
    close();
    esp_ota_abort(handle_);
  }
  job_ = OtaJob();
  strlcpy(job_.updateId, id, sizeof(job_.updateId));
  strlcpy(job_.version, frame["version"] | "", sizeof(job_.version));
  strlcpy(job_.sha256, frame["sha256"] | frame["checksum"] | "", sizeof(job_.sha256));
  strlcpy(job_.path, frame["download_path"] | "", sizeof(job_.path));
  strlcpy(job_.url, frame["url"] | "", sizeof(job_.url));
  job_.size = frame["size"] | 0UL;
  state_ = kDownloading;
  report("acknowledged");
  if (strlen(job_.sha256) != 64 || job_.size == 0 || (!job_.path[0] && !job_.url[0])) {
    fail("download_failed", "the update message lacks sha256, size or an address");
    return;
  }
  // The Ed25519 signature (frame["signature"], over canonicalManifest() of
  // frame["manifest"]) is NOT checked here: see README, "Signed firmware".
  tries_ = 0;
  save();
  if (!startWriting(0)) fail("install_failed", "no OTA partition to write to");
}

inline bool FirmwareUpdater::startWriting(uint32_t from) {
  part_ = esp_ota_get_next_update_partition(nullptr);
  if (part_ == nullptr) return false;
  mbedtls_sha256_init(&sha_);
  mbedtls_sha256_starts(&sha_, 0);
  esp_err_t err;
#if FW_OTA_RESUME_AFTER_RESTART
  if (from > 0) {
    uint8_t buf[512];  // hash again what is already in the partition
    for (uint32_t at = 0; at < from; at += sizeof(buf)) {
      const size_t n = from - at < sizeof(buf) ? from - at : sizeof(buf);
      if (esp_partition_read(part_, at, buf, n) != ESP_OK) return startWriting(0);
      mbedtls_sha256_update(&sha_, buf, n);
    }
    err = esp_ota_resume(part_, OTA_WITH_SEQUENTIAL_WRITES, from, &handle_);
  } else {
    err = esp_ota_begin(part_, job_.size, &handle_);
  }
#else
  from = 0;
  err = esp_ota_begin(part_, job_.size, &handle_);  // erases what the image needs
#endif
  job_.written = err == ESP_OK ? from : 0;
  progress_.reset();
  return err == ESP_OK;
}

inline void FirmwareUpdater::loop(uint32_t now, bool online) {
  if (trial_ && (int32_t)(now - trialUntil_) >= 0) {
    Serial.println("the server never acknowledged the new firmware: rolling back");
    esp_ota_mark_app_invalid_rollback_and_reboot();
  }
  if (state_ == kRebooting && (rebootAcked_ || (int32_t)(now - rebootAt_) >= 0)) {
    Serial.printf("restarting into firmware %s\n", job_.version);
    delay(100);
    ESP.restart();
  }
  if (state_ != kDownloading || !online) return;
  if (!open_ && (int32_t)(now - retryAt_) >= 0 && !open(now)) return;
  if (open_) step(now);
}

inline bool FirmwareUpdater::open(uint32_t now) {
  String url;
  if (job_.path[0]) {
    url = String(FW_USE_TLS ? "https://" : "http://") + FW_HOST + ":" + String(FW_PORT) + job_.path;
  } else {
    url = job_.url;
  }
#if FW_USE_TLS
#ifdef FW_ROOT_CA
  secure_.setCACert(FW_ROOT_CA);
#else
  secure_.setInsecure();
#endif
  WiFiClient& client = secure_;
#else
  WiFiClient& client = plain_;
#endif
  if (!http_.begin(client, url)) {
    retryLater(now, "bad download address", 5000);
    return false;
  }
  http_.setTimeout(15000);
  if (job_.path[0]) http_.addHeader("Authorization", "Bearer " FW_DEVICE_TOKEN);
  char range[32], etag[70];
  if (job_.written > 0) {
    snprintf(range, sizeof(range), "bytes=%lu-", (unsigned long)job_.written);
    snprintf(etag, sizeof(etag), "\"%s\"", job_.sha256);
    http_.addHeader("Range", range);
    http_.addHeader("If-Range", etag);
  }
  const char* keep[] = {"Content-Range", "Retry-After"};
  http_.collectHeaders(keep, 2);
  const int code = http_.GET();
  uint32_t start = 0, total = 0;
  if (code == 206 && parseContentRange(http_.header("Content-Range").c_str(), &start, &total) &&
      start == job_.written && total == job_.size) {
    open_ = true;
  } else if (code == 200 || code == 206 || code == 416) {
    // The whole image (200: another image behind the ETag, or no Range support), or a
    // range we cannot continue: the flash written so far is no prefix of it. Start the
    // partition again; a 200 body is the image from byte 0, the others are asked again.
    if (code != 200) close();
    esp_ota_abort(handle_);
    if (!startWriting(0)) {
      close();
      fail("install_failed", "no OTA partition to write to");
      return false;
    }
    open_ = code == 200;
    retryAt_ = now;
  } else if (code == 503) {
    const long after = http_.header("Retry-After").toInt();
    close();
    retryLater(now, "the server's download slots are full", (after > 0 ? after : 5) * 1000UL);
    --tries_;  // not a failure of this download
  } else {
    close();
    char why[40];
    snprintf(why, sizeof(why), "HTTP %d", code);
    retryLater(now, why, 2000);
  }
  return open_;
}

inline void FirmwareUpdater::step(uint32_t now) {
  static uint8_t buf[kOtaChunk];
  WiFiClient* stream = http_.getStreamPtr();
  for (int i = 0; i < kOtaChunksPerLoop && job_.written < job_.size; ++i) {
    if (stream == nullptr || (!stream->connected() && !stream->available())) {
      close();  // dropped mid-body: the next try asks for the rest (Range)
      retryLater(now, "the connection dropped", 1000);
      return;
    }
    const size_t want = min((size_t)(job_.size - job_.written), sizeof(buf));
    const size_t n = stream->readBytes(buf, min(want, (size_t)max(1, stream->available())));
    if (n == 0) return;  // nothing yet: next loop()
    if (esp_ota_write(handle_, buf, n) != ESP_OK) {
      close();
      fail("install_failed", "writing the OTA partition failed");
      return;
    }
    mbedtls_sha256_update(&sha_, buf, n);
    job_.written += n;
  }
  if (job_.written - savedAt_ >= kOtaSaveEvery) save();
  if (progress_.due(now, job_.written, job_.size)) report("downloading", job_.written);
  if (job_.written >= job_.size) {
    close();
    finish();
  }
}

inline void FirmwareUpdater::finish() {
  uint8_t digest[32];
  mbedtls_sha256_finish(&sha_, digest);
  mbedtls_sha256_free(&sha_);
  if (!digestMatches(digest, job_.sha256)) {
    esp_ota_abort(handle_);
    fail("checksum_mismatch", "the image's SHA-256 is not the expected one");
    return;
  }
  report("downloaded", job_.written);
  report("verified");
  report("installing");
  if (esp_ota_end(handle_) != ESP_OK) {  // checks the image header and its own hash
    fail("install_failed", "esp_ota_end refused the image");
    return;
  }
  if (esp_ota_set_boot_partition(part_) != ESP_OK) {
    fail("install_failed", "esp_ota_set_boot_partition failed");
    return;
  }
  report("rebooting", -1, nullptr, nullptr, rebootRef_);
  nvs_.remove("job");
  state_ = kRebooting;
  rebootAcked_ = false;
  rebootAt_ = millis() + kRebootWaitMs;
}

inline void FirmwareUpdater::acked(const char* ref) {
  if (ref == nullptr) return;
  if (state_ == kRebooting && strcmp(ref, rebootRef_) == 0) rebootAcked_ = true;
  if (trial_ && statusRef_[0] && strcmp(ref, statusRef_) == 0) {
    esp_ota_mark_app_valid_cancel_rollback();  // the server has our version: keep it
    trial_ = false;
    Serial.printf("firmware %s confirmed by the server: marked valid\n", running_);
  }
}

inline void FirmwareUpdater::retryLater(uint32_t now, const char* why, uint32_t waitMs) {
  if (++tries_ > kOtaTries) {
    esp_ota_abort(handle_);
    fail("download_failed", why);
    return;
  }
  Serial.printf("firmware download: %s; trying again in %lu s\n", why,
                (unsigned long)(waitMs / 1000));
  retryAt_ = now + waitMs;
  save();
}

inline void FirmwareUpdater::report(const char* state, long bytes, const char* reason,
                                   const char* detail, char* refOut) {
  char id[16];
  snprintf(id, sizeof(id), "f-%lu", (unsigned long)++frames_);
  JsonDocument doc;
  doc["type"] = "firmware_state";
  doc["id"] = id;
  doc["update_id"] = job_.updateId;
  doc["state"] = state;
  if (bytes >= 0) doc["bytes"] = bytes;
  if (reason != nullptr) doc["reason"] = reason;
  if (detail != nullptr) doc["detail"] = detail;
  if (refOut != nullptr) strlcpy(refOut, id, 16);
  if (send_ != nullptr) send_(doc);
}

inline void FirmwareUpdater::fail(const char* reason, const char* detail) {
  Serial.printf("firmware update failed: %s (%s)\n", reason, detail);
  report("failed", -1, reason, detail);
  forget();
}

inline void FirmwareUpdater::save() {
  nvs_.putBytes("job", &job_, sizeof(job_));
  savedAt_ = job_.written;
}

inline void FirmwareUpdater::forget() {
  nvs_.remove("job");
  state_ = kIdle;
  job_ = OtaJob();
}

}  // namespace fw
