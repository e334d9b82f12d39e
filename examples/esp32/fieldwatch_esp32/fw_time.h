// fw_time.h — ISO 8601 timestamps <-> milliseconds since the Unix epoch.
//
// Plain C++ with no Arduino dependency, so that it can be compiled and tested on a
// PC (see ../host_test). The sketch uses it to
//   * set its clock from the welcome frame's "server_time",
//   * stamp telemetry frames ("2026-11-22T12:00:00.123Z"), which is what makes a
//     resent frame a duplicate rather than a second reading, and
//   * read a command's "expires_at".
#pragma once

#include <stdint.h>

namespace fw {

// Days between 1970-01-01 and the given date of the proleptic Gregorian calendar.
// The year is shifted to start on 1 March so that the leap day is the last day of
// the shifted year; eras are blocks of 400 years (146097 days).
inline int64_t daysFromCivil(int64_t year, int month, int day) {
  year -= month <= 2 ? 1 : 0;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t yearOfEra = year - era * 400;                                // 0..399
  const int64_t shiftedMonth = month > 2 ? month - 3 : month + 9;            // Mar = 0
  const int64_t dayOfYear = (153 * shiftedMonth + 2) / 5 + day - 1;          // 0..365
  const int64_t dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear;
  return era * 146097 + dayOfEra - 719468;  // 719468 = days from 0000-03-01 to 1970-01-01
}

// The inverse of daysFromCivil.
inline void civilFromDays(int64_t days, int64_t* year, int* month, int* day) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t dayOfEra = days - era * 146097;                               // 0..146096
  const int64_t yearOfEra =
      (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365;  // 0..399
  const int64_t dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100);
  const int64_t shiftedMonth = (5 * dayOfYear + 2) / 153;                     // Mar = 0
  *day = static_cast<int>(dayOfYear - (153 * shiftedMonth + 2) / 5 + 1);
  *month = static_cast<int>(shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9);
  *year = yearOfEra + era * 400 + (*month <= 2 ? 1 : 0);
}

namespace detail {
// Reads exactly `width` decimal digits; false if any of them is not a digit.
inline bool digits(const char*& p, int width, int* out) {
  int value = 0;
  for (int i = 0; i < width; ++i) {
    if (p[i] < '0' || p[i] > '9') return false;
    value = value * 10 + (p[i] - '0');
  }
  p += width;
  *out = value;
  return true;
}

inline bool expect(const char*& p, char c) {
  if (*p != c) return false;
  ++p;
  return true;
}

inline bool isLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

inline int daysInMonth(int64_t y, int m) {
  static const int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && isLeap(y) ? 29 : kDays[m - 1];
}
}  // namespace detail

// Parses "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" into milliseconds since
// the epoch (UTC). The fraction may have any number of digits (Python sends six);
// digits past the millisecond are dropped. A time without a zone is refused: every
// timestamp the server sends carries one, and guessing would shift it by hours.
inline bool parseIso8601(const char* s, int64_t* epochMs) {
  if (s == nullptr) return false;
  using namespace detail;
  const char* p = s;
  int year, month, day, hour, minute, second;
  if (!digits(p, 4, &year) || !expect(p, '-') || !digits(p, 2, &month) || !expect(p, '-') ||
      !digits(p, 2, &day)) {
    return false;
  }
  if (*p != 'T' && *p != 't' && *p != ' ') return false;
  ++p;
  if (!digits(p, 2, &hour) || !expect(p, ':') || !digits(p, 2, &minute) || !expect(p, ':') ||
      !digits(p, 2, &second)) {
    return false;
  }
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 ||
      minute > 59 || second > 60) {  // 60: a leap second, folded into the next one
    return false;
  }
  int millis = 0;
  if (*p == '.' || *p == ',') {
    ++p;
    int scale = 100, count = 0;
    while (*p >= '0' && *p <= '9') {
      if (scale > 0) {
        millis += (*p - '0') * scale;
        scale /= 10;
      }
      ++p;
      ++count;
    }
    if (count == 0) return false;
  }
  int offsetMinutes = 0;
  if (*p == 'Z' || *p == 'z') {
    ++p;
  } else if (*p == '+' || *p == '-') {
    const int sign = *p == '-' ? -1 : 1;
    ++p;
    int oh, om;
    if (!digits(p, 2, &oh)) return false;
    if (*p == ':') ++p;
    if (!digits(p, 2, &om) || oh > 23 || om > 59) return false;
    offsetMinutes = sign * (oh * 60 + om);
  } else {
    return false;  // no zone
  }
  if (*p != '\0') return false;
  const int64_t days = daysFromCivil(year, month, day);
  const int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60;
  *epochMs = secs * 1000 + millis;
  return true;
}

// Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 characters and a NUL) for a time at or
// after the epoch and before the year 10000. `out` holds at least 25 bytes.
inline void formatIso8601(int64_t epochMs, char* out) {
  if (epochMs < 0) epochMs = 0;
  int64_t secs = epochMs / 1000;
  const int ms = static_cast<int>(epochMs % 1000);
  const int64_t days = secs / 86400;
  int rest = static_cast<int>(secs % 86400);
  int64_t year;
  int month, day;
  civilFromDays(days, &year, &month, &day);
  const int hour = rest / 3600;
  rest %= 3600;
  const int fields[7] = {static_cast<int>(year), month, day, hour, rest / 60, rest % 60, ms};
  const int widths[7] = {4, 2, 2, 2, 2, 2, 3};
  const char after[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
  char* q = out;
  for (int f = 0; f < 7; ++f) {
    int value = fields[f];
    for (int w = widths[f] - 1; w >= 0; --w) {
      q[w] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
    q += widths[f];
    *q++ = after[f];
  }
  *q = '\0';
}

}  // namespace fw
