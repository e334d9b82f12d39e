// fieldwatch_esp32.ino — an ESP32 device that speaks Fieldwatch's device WebSocket
// protocol (docs/device-protocol.md in the Fieldwatch repository).
//
// What it does
//   * joins WiFi and opens ws(s)://HOST:PORT/ws/device/<token>;
//   * takes the server's settings from the "welcome" frame and sets its clock from it;
//   * every data_reporting_interval: a "telemetry" frame with the chip's internal
//     temperature, the WiFi RSSI and a simulated humidity, kept until acked and resent
//     (same id, same timestamp) when no ack comes;
//   * every heartbeat_interval: a "heartbeat" with battery_level, signal_strength,
//     memory_usage and an approximate cpu_usage;
//   * answers "command" frames (ping, reboot, set_reporting_interval) with command_ack
//     at once, then command_result, and never runs one command twice;
//   * applies "config" frames and answers config_applied;
//   * reconnects with a jittered exponential backoff, and waits for minutes (blinking
//     the LED fast) when the server refuses the token.
//
// Libraries: WebSockets by Markus Sattler (links2004/arduinoWebSockets) 2.6 or newer,
// ArduinoJson 7. Board: any ESP32 with the Arduino core 2.x or 3.x. See README.md.
//
// Sections
//    1. Configuration and includes
//    2. Protocol constants
//    3. State
//    4. Logging, LED
//    5. Clock
//    6. Settings kept in flash (NVS)
//    7. Readings
//    8. Sending frames
//    9. Commands
//   10. Configuration pushes
//   11. Receiving frames
//   12. Connection: events and backoff
//   13. WiFi
//   14. setup() and loop()

// ===================================================================================
// 1. Configuration and includes
// ===================================================================================

#if __has_include("config.h")
#include "config.h"
#else
#error "Copy config.h.example to config.h (next to this sketch) and fill it in."
#endif

// Optional settings: defaults for a config.h made from an older example.
#ifndef FW_USE_TLS
#define FW_USE_TLS 0
#endif
#ifndef FW_TOKEN_IN_HEADER
#define FW_TOKEN_IN_HEADER 0
#endif
#ifndef FW_LED_PIN
#define FW_LED_PIN 2
#endif
#ifndef FW_LED_ACTIVE_LOW
#define FW_LED_ACTIVE_LOW 0
#endif
#ifndef FW_BATTERY_ADC_PIN
#define FW_BATTERY_ADC_PIN -1
#endif
#ifndef FW_BATTERY_DIVIDER
#define FW_BATTERY_DIVIDER 2.0f
#endif
#ifndef FW_REPORTING_INTERVAL_S
#define FW_REPORTING_INTERVAL_S 0
#endif
#ifndef FW_FIRMWARE_VERSION
#define FW_FIRMWARE_VERSION "0.1.0"
#endif
#ifndef FW_LOG_FRAMES
#define FW_LOG_FRAMES 0
#endif
#ifndef FW_OUTBOX_SIZE
#define FW_OUTBOX_SIZE 32
#endif

#include <Arduino.h>
#include <ArduinoJson.h>
#include <Preferences.h>
#include <WiFi.h>
#include <esp_system.h>  // esp_reset_reason()
#if __has_include(<esp_random.h>)
#include <esp_random.h>  // esp_random() (ESP-IDF 5)
#endif
#include <math.h>
#include <sys/time.h>  // gettimeofday(), settimeofday()

#include "fw_backoff.h"
#include "fw_commands.h"
#include "fw_outbox.h"
#include "fw_socket.h"
#include "fw_time.h"
#include "fw_update.h"

// ===================================================================================
// 2. Protocol constants
// ===================================================================================

// Used until the welcome frame says otherwise (these are the server's defaults).
const uint32_t kDefaultHeartbeatS = 60;
const uint32_t kDefaultReportS = 300;
const uint8_t kDefaultMaxRetries = 3;

const uint32_t kAckTimeoutMs = 10000;     // "no ack within about 10 seconds: resend"
const size_t kMaxInFlight = 4;            // unacked telemetry frames on the wire at once
const int kSendsPerLoop = 4;              // telemetry frames sent per loop() at most
const uint32_t kStableSessionMs = 60000;  // a connection this long resets the backoff
const uint32_t kBackoffBaseMs = 1000;     // delay = min(300 s, 1 s * 2^attempt)
const uint32_t kBackoffCapMs = 300000;
const uint8_t kAfterServerCloseAttempt = 3;  // a close from the server: wait 4-8 s at least
const uint32_t kRefusedRetryMs = 10UL * 60 * 1000;  // after HTTP 403: 10 minutes (±20 %)
const uint32_t kRebootDelayMs = 1500;     // time for command_result to leave before restart
const uint32_t kWifiRetryMs = 30000;

// Accepted ranges, for set_reporting_interval and config pushes.
const long kMinReportS = 5, kMaxReportS = 86400;
const long kMinHeartbeatS = 5, kMaxHeartbeatS = 3600;

// WebSocket-level pings (the server answers them): find a dead connection in ~25 s.
const uint32_t kPingIntervalMs = 15000, kPongTimeoutMs = 5000;
const uint8_t kMissedPongsBeforeDisconnect = 2;

// ===================================================================================
// 3. State
// ===================================================================================

FieldwatchSocket ws;
Preferences prefs;
fw::Backoff backoff(kBackoffBaseMs, kBackoffCapMs);
fw::Outbox<FW_OUTBOX_SIZE> outbox;  // telemetry waiting for its ack
fw::CommandLedger ledger;           // the last 16 commands, for deduplication
fw::FirmwareUpdater ota;            // firmware updates (fw_update.h)

// The Arduino core marks a new image valid before setup() unless this says "later":
// here it is marked valid only once the server acknowledged our version (fw_update.h).
extern "C" bool verifyRollbackLater() { return true; }

// From the welcome frame.
uint32_t serverHeartbeatS = kDefaultHeartbeatS;
uint32_t serverReportS = kDefaultReportS;
uint8_t serverMaxRetries = kDefaultMaxRetries;
char deviceId[40] = "";

// Kept in NVS: set by config pushes and by set_reporting_interval (0: not set).
uint32_t localReportS = 0;
uint32_t localHeartbeatS = 0;
bool ledEnabled = true;
long configVersion = -1;  // -1: no config applied yet

// Connection.
bool sessionReady = false;   // the welcome frame arrived on this connection
bool tokenRefused = false;   // the last handshake got HTTP 403 (until the next welcome)
uint32_t connectedAtMs = 0;  // 0: not connected
uint32_t frameCounter = 0;   // for heartbeat and status frame ids

// Timers (millis()).
bool sampledOnce = false;
uint32_t lastSampleMs = 0;
uint32_t lastHeartbeatMs = 0;
uint32_t lastWifiAttemptMs = 0;
bool rebootPending = false;
uint32_t rebootAtMs = 0;

// Simulated values and the cpu_usage estimate.
float simulatedHumidity = 45.0f;
float simulatedBattery = 100.0f;
uint32_t busyUs = 0;
uint32_t busyWindowStartUs = 0;

// ===================================================================================
// 4. Logging, LED
// ===================================================================================

#define LOGF(fmt, ...) Serial.printf("[%8lu] " fmt "\n", (unsigned long)millis(), ##__VA_ARGS__)

// Slow blink: looking for the server. Steady: online. Fast blink: the server refuses
// the token (shown even when a config push turned the LED off: it needs a person).
void updateLed(uint32_t now) {
#if FW_LED_PIN >= 0
  bool on;
  if (tokenRefused) {
    on = (now / 100) % 2;
  } else if (sessionReady) {
    on = ledEnabled;
  } else {
    on = ledEnabled && (now / 500) % 2;
  }
  digitalWrite(FW_LED_PIN, (on != (FW_LED_ACTIVE_LOW != 0)) ? HIGH : LOW);
#else
  (void)now;
#endif
}

// ===================================================================================
// 5. Clock
// ===================================================================================
// No NTP: the clock is set from the welcome frame's server_time. The server's clock is
// the one that matters anyway: it refuses readings stamped more than 5 minutes ahead
// of it.

int64_t epochMsNow() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

bool clockValid() {
  return epochMsNow() > 1700000000000LL;  // after November 2023: it has been set
}

void setClockFromServer(const char* serverTime) {
  int64_t serverMs;
  if (!fw::parseIso8601(serverTime, &serverMs)) {
    LOGF("welcome: unreadable server_time, clock not set");
    return;
  }
  const int64_t drift = serverMs - epochMsNow();
  if (drift > -1000 && drift < 1000) return;  // close enough
  struct timeval tv;
  tv.tv_sec = (time_t)(serverMs / 1000);
  tv.tv_usec = (suseconds_t)((serverMs % 1000) * 1000);
  settimeofday(&tv, nullptr);
  char text[25];
  fw::formatIso8601(serverMs, text);
  LOGF("clock set from the server: %s", text);
}

// ===================================================================================
// 6. Settings kept in flash (NVS)
// ===================================================================================

void saveLedger() {
  if (prefs.putBytes("commands", &ledger, sizeof(ledger)) != sizeof(ledger)) {
    LOGF("could not save the command ledger to NVS");
  }
}

void loadSettings() {
  prefs.begin("fieldwatch", false);
  localReportS = prefs.getUInt("report_s", 0);
  localHeartbeatS = prefs.getUInt("hb_s", 0);
  ledEnabled = prefs.getBool("led", true);
  configVersion = prefs.getLong("cfg_ver", -1);

  // The command ledger is one blob. Anything unexpected (first boot, another layout)
  // starts an empty one.
  if (prefs.getBytesLength("commands") == sizeof(ledger) &&
      prefs.getBytes("commands", &ledger, sizeof(ledger)) == sizeof(ledger) && ledger.valid()) {
    const uint8_t interrupted = ledger.failInterrupted();
    if (interrupted) {
      LOGF("%u command(s) were interrupted by the restart: marked failed", (unsigned)interrupted);
      saveLedger();
    }
  } else {
    ledger.clear();
  }
}

void saveSettings() {
  prefs.putUInt("report_s", localReportS);
  prefs.putUInt("hb_s", localHeartbeatS);
  prefs.putBool("led", ledEnabled);
  prefs.putLong("cfg_ver", configVersion);
}

// The telemetry period: a config push or set_reporting_interval wins, then the bench
// value from config.h, then the server's suggestion.
uint32_t reportSeconds() {
  if (localReportS) return localReportS;
  if (FW_REPORTING_INTERVAL_S > 0) return FW_REPORTING_INTERVAL_S;
  return serverReportS;
}

// The heartbeat period: never slower than the welcome frame asks ("send a heartbeat at
// least this often"); a config push may only make it faster.
uint32_t heartbeatSeconds() {
  if (localHeartbeatS && localHeartbeatS < serverHeartbeatS) return localHeartbeatS;
  return serverHeartbeatS;
}

// ===================================================================================
// 7. Readings
// ===================================================================================

double round1(double x) { return round(x * 10.0) / 10.0; }

// The chip's own temperature sensor: the die, not the room. Several ESP32 revisions
// have none and always return 53.3 (see README).
float readChipTemperature() {
  const float t = temperatureRead();
  return isfinite(t) ? t : NAN;
}

// A simulated humidity: a slow random walk, sent with quality "estimated".
float readHumidity() {
  simulatedHumidity += ((int32_t)(esp_random() % 2001) - 1000) / 1000.0f;
  if (simulatedHumidity < 20.0f) simulatedHumidity = 20.0f;
  if (simulatedHumidity > 80.0f) simulatedHumidity = 80.0f;
  return simulatedHumidity;
}

float readBatteryPercent() {
#if FW_BATTERY_ADC_PIN >= 0
  // A single Li-ion cell behind a voltage divider: 3.3 V empty, 4.2 V full (linear,
  // which is rough but fine for a dashboard).
  const float volts = analogReadMilliVolts(FW_BATTERY_ADC_PIN) * FW_BATTERY_DIVIDER / 1000.0f;
  float pct = (volts - 3.3f) / (4.2f - 3.3f) * 100.0f;
  return pct < 0 ? 0 : (pct > 100 ? 100 : pct);
#else
  // No battery on a dev board: a simulated one that drains and "recharges" at 20 %.
  simulatedBattery -= 0.05f;
  if (simulatedBattery < 20.0f) simulatedBattery = 100.0f;
  return simulatedBattery;
#endif
}

float heapUsedPercent() {
  const uint32_t total = ESP.getHeapSize();
  const uint32_t freeBytes = ESP.getFreeHeap();
  return total ? 100.0f * (float)(total - freeBytes) / (float)total : 0.0f;
}

// Approximate: the share of time loop() spent working (not in its delay()) since the
// last heartbeat. It leaves out the WiFi and TCP/IP tasks, so it is a rough load figure
// for this sketch, not the whole chip.
float takeCpuUsage() {
  const uint32_t now = micros();
  const uint32_t span = now - busyWindowStartUs;
  const float pct = span ? 100.0f * (float)busyUs / (float)span : 0.0f;
  busyUs = 0;
  busyWindowStartUs = now;
  return pct > 100.0f ? 100.0f : pct;
}

void takeSample(uint32_t now) {
  lastSampleMs = now;
  sampledOnce = true;
  uint32_t droppedSeq;
  const fw::Sample* s = outbox.add(epochMsNow(), readChipTemperature(), readHumidity(),
                                   (int16_t)WiFi.RSSI(), &droppedSeq);
  if (droppedSeq) LOGF("outbox full: dropped the oldest sample t-%lu", (unsigned long)droppedSeq);
  LOGF("sample t-%lu taken (%u waiting)", (unsigned long)s->seq, (unsigned)outbox.size());
}

// ===================================================================================
// 8. Sending frames
// ===================================================================================

bool sendJson(JsonDocument& doc) {
  if (!ws.isConnected()) return false;
  String text;
  serializeJson(doc, text);
#if FW_LOG_FRAMES
  LOGF("-> %s", text.c_str());
#endif
  return ws.sendTXT(text);
}

// One telemetry frame for one sample. The id ("t-<seq>") comes back as "ref" in the
// ack; the timestamp is the time of measurement, so that a resend is recognised as a
// duplicate instead of being stored as a second reading.
bool sendSample(const fw::Sample& s) {
  char id[16];
  snprintf(id, sizeof(id), "t-%lu", (unsigned long)s.seq);
  char timestamp[25];
  fw::formatIso8601(s.timestampMs, timestamp);

  JsonDocument doc;
  doc["type"] = "telemetry";
  doc["id"] = id;
  doc["timestamp"] = timestamp;
  JsonObject metrics = doc["metrics"].to<JsonObject>();
  if (!isnan(s.chipTemperature)) {
    JsonObject t = metrics["chip_temperature"].to<JsonObject>();
    t["value"] = round1(s.chipTemperature);
    t["unit"] = "celsius";
  }
  JsonObject h = metrics["humidity"].to<JsonObject>();
  h["value"] = round1(s.humidity);
  h["unit"] = "%";
  h["quality"] = "estimated";  // simulated
  JsonObject r = metrics["rssi"].to<JsonObject>();
  r["value"] = s.rssi;
  r["unit"] = "dBm";
  return sendJson(doc);
}

// Sends what is due from the outbox: new samples oldest first, and resends of those
// whose ack is overdue. A sample sent 1 + max_retry_attempts times without an ack is
// dropped and the connection is restarted (the protocol's advice).
void flushOutbox(uint32_t now) {
  for (int i = 0; i < kSendsPerLoop; ++i) {
    fw::OutboxStep step = outbox.step(now, kAckTimeoutMs, serverMaxRetries, kMaxInFlight);
    if (step.gaveUpSeq) {
      LOGF("t-%lu: no ack after %u sends, dropped", (unsigned long)step.gaveUpSeq,
           (unsigned)serverMaxRetries + 1);
      if (step.reconnect) {
        LOGF("acks stopped coming: reconnecting");
        ws.disconnect();
        return;
      }
      continue;
    }
    if (step.send == nullptr) return;
    if (!sendSample(*step.send)) return;  // not writable now: next loop
    if (step.send->sends > 0) {
      LOGF("resending t-%lu (send %u)", (unsigned long)step.send->seq,
           (unsigned)step.send->sends + 1);
    }
    outbox.markSent(step.send, now);
  }
}

void sendHeartbeat() {
  char id[16];
  snprintf(id, sizeof(id), "hb-%lu", (unsigned long)++frameCounter);
  JsonDocument doc;
  doc["type"] = "heartbeat";
  doc["id"] = id;
  doc["battery_level"] = round1(readBatteryPercent());
  doc["signal_strength"] = (int)WiFi.RSSI();
  doc["memory_usage"] = round1(heapUsedPercent());
  doc["cpu_usage"] = round1(takeCpuUsage());
  sendJson(doc);
}

const char* resetReasonName() {
  switch (esp_reset_reason()) {
    case ESP_RST_POWERON: return "power_on";
    case ESP_RST_EXT: return "external";
    case ESP_RST_SW: return "software";
    case ESP_RST_PANIC: return "panic";
    case ESP_RST_INT_WDT:
    case ESP_RST_TASK_WDT:
    case ESP_RST_WDT: return "watchdog";
    case ESP_RST_DEEPSLEEP: return "deep_sleep";
    case ESP_RST_BROWNOUT: return "brownout";
    default: return "other";
  }
}

// Once per connection, after the welcome: scalar fields are stored as readings.
void sendStatus() {
  char id[16];
  snprintf(id, sizeof(id), "s-%lu", (unsigned long)++frameCounter);
  JsonDocument doc;
  doc["type"] = "status";
  doc["id"] = id;
  doc["state"] = "running";
  doc["uptime"] = millis() / 1000;
  doc["firmware"] = FW_FIRMWARE_VERSION;
  doc["firmware_version"] = FW_FIRMWARE_VERSION;  // what completes a firmware update
  doc["reset_reason"] = resetReasonName();
  if (configVersion >= 0) doc["config_version"] = configVersion;
  if (sendJson(doc)) ota.statusSent(id);  // its ack confirms a new image (fw_update.h)
}

// ===================================================================================
// 9. Commands
// ===================================================================================
// Server -> device:
//   {"type":"command","command_id":"<uuid>","command":"ping","params":{...},
//    "attempt":1,"expires_at":"<iso8601>"}
// Device -> server, in this order:
//   {"type":"command_ack","command_id":"..."}                      at once, on receipt
//   {"type":"command_result","command_id":"...","status":"completed"|"failed",
//    "result":{...}}                                                when it has run

void sendCommandAck(const char* commandId) {
  JsonDocument doc;
  doc["type"] = "command_ack";
  doc["command_id"] = commandId;
  sendJson(doc);
}

void sendCommandResult(const char* commandId, bool ok, const char* resultJson) {
  JsonDocument doc;
  doc["type"] = "command_result";
  doc["command_id"] = commandId;
  doc["status"] = ok ? "completed" : "failed";
  doc["result"] = serialized(resultJson);  // already JSON text
  sendJson(doc);
}

// A whole number from JSON (12 or 12.0); false for anything else.
bool wholeNumber(JsonVariantConst v, long* out) {
  if (v.is<long>()) {
    *out = v.as<long>();
    return true;
  }
  if (v.is<double>()) {
    const double d = v.as<double>();
    if (d == floor(d) && fabs(d) < 2e9) {
      *out = (long)d;
      return true;
    }
  }
  return false;
}

// Runs one command and fills `result`. Returns true for "completed", false for
// "failed".
bool runCommand(const char* name, JsonVariantConst params, JsonObject result) {
  if (strcmp(name, "ping") == 0) {
    result["pong"] = true;
    result["uptime_ms"] = millis();  // wraps after 49.7 days
    return true;
  }
  if (strcmp(name, "reboot") == 0) {
    // The result is sent now, the restart happens in loop() a moment later: after a
    // restart the device could not answer any more.
    result["restart_in_ms"] = kRebootDelayMs;
    rebootPending = true;
    rebootAtMs = millis() + kRebootDelayMs;
    return true;
  }
  if (strcmp(name, "set_reporting_interval") == 0) {
    long interval;
    if (!wholeNumber(params["interval"], &interval) || interval < kMinReportS ||
        interval > kMaxReportS) {
      result["error"] = "interval must be a whole number of seconds from 5 to 86400";
      return false;
    }
    localReportS = (uint32_t)interval;
    saveSettings();
    LOGF("reporting interval set to %ld s", interval);
    result["interval"] = interval;
    return true;
  }
  result["error"] = "unknown command";
  return false;
}

// Records the outcome, then reports it. Saving first matters: if the device restarts
// right after sending, a resend of the command still finds it done.
void finishCommand(fw::CommandRecord* record, bool ok, JsonDocument& result) {
  String text;
  serializeJson(result, text);
  fw::CommandLedger::finish(record, ok, text.c_str());
  saveLedger();
  sendCommandResult(record->id, ok, text.c_str());
}

void handleCommand(JsonDocument& frame) {
  const char* commandId = frame["command_id"];
  const char* name = frame["command"] | "";
  const int attempt = frame["attempt"] | 1;
  if (commandId == nullptr || commandId[0] == '\0') {
    LOGF("command without command_id: ignored");  // nothing to ack it with
    return;
  }
  LOGF("command %s '%s' (attempt %d)", commandId, name, attempt);

  // 1. Ack at once, before anything else. The ack only says "it arrived": it stops the
  //    server from resending. Whether it worked is the command_result's business.
  sendCommandAck(commandId);

  // 2. Seen before? Then the server resent it because our ack got lost. Answer again
  //    and do NOT run it a second time (think of "reboot").
  fw::CommandRecord* record = ledger.find(commandId);
  if (record != nullptr) {
    if (record->state == fw::kCommandRunning) {
      LOGF("  duplicate of a command still running: acked again");
    } else {
      LOGF("  duplicate: acked again, stored result resent");
      sendCommandResult(commandId, record->state == fw::kCommandCompleted, record->result);
    }
    return;
  }

  // An id we could not remember could not be deduplicated either: refuse the command
  // rather than risk running it twice.
  if (!fw::CommandLedger::idFits(commandId)) {
    sendCommandResult(commandId, false, "{\"error\":\"command_id too long\"}");
    return;
  }

  // 3. New: remember it (in flash) before running it.
  record = ledger.remember(commandId);
  saveLedger();

  JsonDocument result;
  JsonObject resultObject = result.to<JsonObject>();

  // 4. Too late? Run nothing after expires_at (when our clock can tell).
  int64_t expiresMs;
  const char* expiresAt = frame["expires_at"];
  if (expiresAt != nullptr && clockValid() && fw::parseIso8601(expiresAt, &expiresMs) &&
      epochMsNow() > expiresMs) {
    resultObject["error"] = "expired";
    finishCommand(record, false, result);
    return;
  }

  // 5. Run it and report.
  const bool ok = runCommand(name, frame["params"], resultObject);
  finishCommand(record, ok, result);
}

// ===================================================================================
// 10. Configuration pushes
// ===================================================================================
// {"type":"config","version":3,"config":{...}} carries the WHOLE desired configuration:
// a key that is absent goes back to its default. Keys this sketch does not know are
// ignored (and logged); a value out of range keeps the current one. The version is
// saved with the settings, and config_applied tells the server which version is live.

void handleConfig(JsonDocument& frame) {
  long version;
  if (!wholeNumber(frame["version"], &version)) {
    LOGF("config without a version: ignored");
    return;
  }
  JsonObjectConst config = frame["config"];
  if (config.isNull()) {
    LOGF("config %ld without a config object: ignored", version);
    return;
  }

  long value;
  JsonVariantConst report = config["data_reporting_interval"];
  if (report.isNull()) {
    localReportS = 0;
  } else if (wholeNumber(report, &value) && value >= kMinReportS && value <= kMaxReportS) {
    localReportS = (uint32_t)value;
  } else {
    LOGF("config %ld: data_reporting_interval out of range, kept", version);
  }

  JsonVariantConst heartbeat = config["heartbeat_interval"];
  if (heartbeat.isNull()) {
    localHeartbeatS = 0;
  } else if (wholeNumber(heartbeat, &value) && value >= kMinHeartbeatS &&
             value <= kMaxHeartbeatS) {
    localHeartbeatS = (uint32_t)value;
  } else {
    LOGF("config %ld: heartbeat_interval out of range, kept", version);
  }

  JsonVariantConst led = config["led"];  // true/false or "on"/"off"
  if (led.isNull()) {
    ledEnabled = true;
  } else if (led.is<bool>()) {
    ledEnabled = led.as<bool>();
  } else if (led == "on" || led == "off") {
    ledEnabled = led == "on";
  } else {
    LOGF("config %ld: led must be true/false or \"on\"/\"off\", kept", version);
  }

  for (JsonPairConst kv : config) {
    const char* key = kv.key().c_str();
    if (strcmp(key, "data_reporting_interval") != 0 && strcmp(key, "heartbeat_interval") != 0 &&
        strcmp(key, "led") != 0) {
      LOGF("config %ld: '%s' is not understood by this firmware, ignored", version, key);
    }
  }

  configVersion = version;
  saveSettings();
  LOGF("config %ld applied: report every %lu s, heartbeat every %lu s, LED %s", version,
       (unsigned long)reportSeconds(), (unsigned long)heartbeatSeconds(),
       ledEnabled ? "on" : "off");

  JsonDocument reply;
  reply["type"] = "config_applied";
  reply["version"] = version;
  sendJson(reply);
}

// ===================================================================================
// 11. Receiving frames
// ===================================================================================

void handleWelcome(JsonDocument& frame) {
  JsonObjectConst cfg = frame["server_config"];
  long value;
  if (wholeNumber(cfg["heartbeat_interval"], &value) && value >= kMinHeartbeatS) {
    serverHeartbeatS = (uint32_t)value;
  }
  if (wholeNumber(cfg["data_reporting_interval"], &value) && value >= kMinReportS) {
    serverReportS = (uint32_t)value;
  }
  if (wholeNumber(cfg["max_retry_attempts"], &value) && value >= 0 && value <= 20) {
    serverMaxRetries = (uint8_t)value;
  }
  strlcpy(deviceId, frame["device_id"] | "?", sizeof(deviceId));
  setClockFromServer(frame["server_time"]);

  sessionReady = true;
  tokenRefused = false;
  LOGF("welcome: device %s; heartbeat every %lu s, telemetry every %lu s, %u retries",
       deviceId, (unsigned long)heartbeatSeconds(), (unsigned long)reportSeconds(),
       (unsigned)serverMaxRetries);

  sendStatus();
  sendHeartbeat();
  lastHeartbeatMs = millis();
}

// "t-17" -> 17; 0 for anything that is not one of our telemetry ids.
uint32_t telemetrySeq(const char* ref) {
  if (ref == nullptr || ref[0] != 't' || ref[1] != '-') return 0;
  return (uint32_t)strtoul(ref + 2, nullptr, 10);
}

// {"type":"ack","ref":"t-12","accepted":3,"duplicates":0,"rejected":[...]}
// The readings are committed: the sample can go.
void handleAck(JsonDocument& frame) {
  const char* ref = frame["ref"];
  ota.acked(ref);  // a status or firmware_state frame
  const uint32_t seq = telemetrySeq(ref);
  if (seq == 0) return;  // a heartbeat or status ack: nothing more to do
  if (!outbox.remove(seq)) return;  // a late ack for a frame already given up
  JsonArrayConst rejected = frame["rejected"];
  LOGF("ack %s: %d accepted, %d duplicates, %u rejected", ref, frame["accepted"] | 0,
       frame["duplicates"] | 0, (unsigned)rejected.size());
  for (JsonObjectConst r : rejected) {
    LOGF("  rejected %s: %s", r["metric"] | "?", r["reason"] | "?");
  }
}

// {"type":"error","code":"...","message":"...","ref":"t-12"}: nothing in that frame
// was stored.
void handleError(JsonDocument& frame) {
  const char* code = frame["code"] | "?";
  const char* ref = frame["ref"];
  LOGF("server error %s%s%s: %s", code, ref ? " for " : "", ref ? ref : "",
       frame["message"] | "");
  const uint32_t seq = telemetrySeq(ref);
  if (seq == 0) return;
  if (strcmp(code, "rate_limited") == 0) {
    outbox.holdOff(seq, millis(), 2000);  // dropped by the server: resend a bit later
  } else if (strcmp(code, "overloaded") == 0) {
    float retryAfter = frame["retry_after"].as<float>();
    if (!(retryAfter > 0)) retryAfter = 5;
    outbox.holdOff(seq, millis(), (uint32_t)(retryAfter * 1000));
  } else {
    // bad_json, invalid, too_large, unknown_type: the same frame would fail again.
    outbox.remove(seq);
  }
}

void handleText(uint8_t* payload, size_t length) {
#if FW_LOG_FRAMES
  LOGF("<- %.*s", (int)length, (const char*)payload);
#endif
  JsonDocument frame;
  const DeserializationError err = deserializeJson(frame, (const char*)payload, length);
  if (err) {
    LOGF("unreadable frame from the server: %s", err.c_str());
    return;
  }
  const char* type = frame["type"] | "";
  if (strcmp(type, "ack") == 0) {
    handleAck(frame);
  } else if (strcmp(type, "welcome") == 0) {
    handleWelcome(frame);
  } else if (strcmp(type, "command") == 0) {
    handleCommand(frame);
  } else if (strcmp(type, "config") == 0) {
    handleConfig(frame);
  } else if (strcmp(type, "firmware_update") == 0) {
    ota.take(frame);
  } else if (strcmp(type, "error") == 0) {
    handleError(frame);
  } else {
    LOGF("frame type '%s' not known to this firmware: ignored", type);
  }
}

// ===================================================================================
// 12. Connection: events and backoff
// ===================================================================================
// The library reconnects by itself, `reconnect interval` ms after a disconnect. We set
// that interval on every disconnect, which turns its fixed delay into the protocol's
// jittered exponential backoff.

void onDisconnected() {
  const uint32_t now = millis();
  const uint32_t lived = connectedAtMs ? now - connectedAtMs : 0;
  const bool hadSession = sessionReady;
  connectedAtMs = 0;
  sessionReady = false;
  outbox.connectionLost();  // in-flight frames will be resent on the next connection

  const uint16_t http = ws.lastHttpStatus();
  uint32_t waitMs;
  if (http == 403 || http == 401) {
    // The token is unknown, revoked or expired, or the device is retired. It will not
    // become valid by itself: wait long, and blink fast so that someone notices.
    tokenRefused = true;
    waitMs = fw::jittered(kRefusedRetryMs, esp_random());
    LOGF("the server refused the token (HTTP %u). Create a new one "
         "(POST /api/v1/devices/{id}/tokens), put it in config.h and flash again. "
         "Next try in %lu s.", (unsigned)http, (unsigned long)(waitMs / 1000));
  } else {
    if (http != 0 && http != 101) {
      LOGF("handshake answered with HTTP %u (check FW_HOST, FW_PORT, FW_USE_TLS)", (unsigned)http);
    }
    if (lived >= kStableSessionMs) backoff.reset();
    if (ws.closedByServer()) {
      // The server closed the connection. The library does not tell us the close code:
      // it may be a restart (1012) or "replaced by a new connection" (4000: another
      // device uses this token!) or "revoked" (4001, then the next handshake gets 403).
      // Either way, do not come straight back.
      backoff.atLeast(kAfterServerCloseAttempt);
      LOGF("the server closed the connection");
    }
    waitMs = backoff.next(esp_random());
    if (hadSession || lived > 0) {
      LOGF("disconnected after %lu s; reconnecting in %lu.%lu s", (unsigned long)(lived / 1000),
           (unsigned long)(waitMs / 1000), (unsigned long)(waitMs % 1000 / 100));
    } else {
      LOGF("could not connect; next try in %lu.%lu s", (unsigned long)(waitMs / 1000),
           (unsigned long)(waitMs % 1000 / 100));
    }
  }
  ws.setReconnectInterval(waitMs);
}

void onSocketEvent(WStype_t type, uint8_t* payload, size_t length) {
  switch (type) {
    case WStype_CONNECTED:
      // payload is the URL path, which holds the token: never print it.
      connectedAtMs = millis();
      if (connectedAtMs == 0) connectedAtMs = 1;
      LOGF("WebSocket open, waiting for the welcome frame");
      break;
    case WStype_TEXT:
      handleText(payload, length);
      break;
    case WStype_DISCONNECTED:
      onDisconnected();
      break;
    case WStype_BIN:
      LOGF("binary frame ignored (the protocol is JSON text)");
      break;
    default:
      break;  // pings and pongs are answered by the library
  }
}

void beginSocket() {
  static char path[160];
#if FW_TOKEN_IN_HEADER
  strlcpy(path, "/ws/device", sizeof(path));
#else
  snprintf(path, sizeof(path), "/ws/device/%s", FW_DEVICE_TOKEN);
#endif

  // Last argument "": no Sec-WebSocket-Protocol header (the library's default would
  // ask for an "arduino" subprotocol that the server does not speak).
#if FW_USE_TLS
#ifdef FW_ROOT_CA
  ws.beginSslWithCA(FW_HOST, FW_PORT, path, FW_ROOT_CA, "");
#else
#warning "FW_USE_TLS without FW_ROOT_CA: the server's certificate is NOT checked (see README)"
  ws.beginSSL(FW_HOST, FW_PORT, path, "", "");
#endif
#else
  ws.begin(FW_HOST, FW_PORT, path, "");
#endif

#if FW_TOKEN_IN_HEADER
  ws.setAuthorization("Bearer " FW_DEVICE_TOKEN);  // after begin(), which clears it
#endif
  ws.onEvent(onSocketEvent);
  ws.setReconnectInterval(backoff.next(esp_random()));
  ws.enableHeartbeat(kPingIntervalMs, kPongTimeoutMs, kMissedPongsBeforeDisconnect);
}

// ===================================================================================
// 13. WiFi
// ===================================================================================

void maintainWifi(uint32_t now) {
  static bool wasConnected = false;
  const bool connected = WiFi.status() == WL_CONNECTED;
  if (connected != wasConnected) {
    wasConnected = connected;
    if (connected) {
      LOGF("WiFi connected: %s, RSSI %d dBm", WiFi.localIP().toString().c_str(), WiFi.RSSI());
    } else {
      LOGF("WiFi lost");
    }
  }
  // The driver reconnects by itself (setAutoReconnect); nudge it if that takes long.
  if (!connected && now - lastWifiAttemptMs >= kWifiRetryMs) {
    lastWifiAttemptMs = now;
    WiFi.reconnect();
  }
}

// ===================================================================================
// 14. setup() and loop()
// ===================================================================================

void setup() {
  Serial.begin(115200);
  delay(200);
  LOGF("Fieldwatch ESP32 example, firmware %s", FW_FIRMWARE_VERSION);
  LOGF("server %s://%s:%u, token %.8s... in the %s", FW_USE_TLS ? "wss" : "ws", FW_HOST,
       (unsigned)FW_PORT, FW_DEVICE_TOKEN, FW_TOKEN_IN_HEADER ? "header" : "path");

#if FW_LED_PIN >= 0
  pinMode(FW_LED_PIN, OUTPUT);
#endif
  loadSettings();
  if (configVersion >= 0) LOGF("config version %ld loaded from flash", configVersion);
  ota.begin(sendJson, FW_FIRMWARE_VERSION);  // a new image on trial, an update to continue

  WiFi.mode(WIFI_STA);
  WiFi.setAutoReconnect(true);
  WiFi.begin(FW_WIFI_SSID, FW_WIFI_PASSWORD);
  lastWifiAttemptMs = millis();

  beginSocket();
  busyWindowStartUs = micros();
}

void loop() {
  const uint32_t startUs = micros();
  uint32_t now = millis();

  maintainWifi(now);
  if (WiFi.status() == WL_CONNECTED || ws.isConnected()) {
    ws.loop();  // connects, reads frames, calls onSocketEvent()
  }
  now = millis();

  // Readings are taken whether connected or not (they wait in the outbox), but only
  // once the clock is set: a resend must carry the original timestamp.
  if (clockValid() && (!sampledOnce || now - lastSampleMs >= reportSeconds() * 1000UL)) {
    takeSample(now);
  }

  if (sessionReady) {
    if (now - lastHeartbeatMs >= heartbeatSeconds() * 1000UL) {
      lastHeartbeatMs = now;
      sendHeartbeat();
    }
    flushOutbox(now);
    if (ota.wantsStatus()) sendStatus();  // an update to the version we already run
  }
  ota.loop(now, WiFi.status() == WL_CONNECTED);  // a few KB of a download per loop()

  if (rebootPending && (int32_t)(now - rebootAtMs) >= 0) {
    LOGF("rebooting (command)");
    ws.disconnect();
    delay(100);
    ESP.restart();
  }

  updateLed(now);
  busyUs += micros() - startUs;
  delay(2);  // let the idle task run
}
