#include "tokenizer/utf8.h"

#include <cstdlib>
#include <vector>

#include <utf8proc.h>

namespace fs::utf8 {

size_t sequence_length(std::string_view s, size_t pos, size_t* subpart_len, bool* incomplete) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  const uint8_t b0 = p[pos];
  if (incomplete) *incomplete = false;
  if (b0 < 0x80) return 1;
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // valid range of the second byte (Unicode Table 3-7)
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    if (subpart_len) *subpart_len = 1;
    return 0;
  }
  size_t i = 1;
  for (; i < need; ++i) {
    if (pos + i >= n) {
      if (incomplete) *incomplete = true;
      if (subpart_len) *subpart_len = i;
      return 0;
    }
    const uint8_t b = p[pos + i];
    const bool ok = (i == 1) ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      if (subpart_len) *subpart_len = i;
      return 0;
    }
  }
  return need;
}

bool is_valid(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const size_t len = sequence_length(s, pos);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

void append_lossy(std::string_view s, std::string* out) {
  size_t pos = 0;
  size_t run_start = 0;
  while (pos < s.size()) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t subpart = 0;
    const size_t len = sequence_length(s, pos, &subpart);
    if (len > 0) {
      pos += len;
      continue;
    }
    out->append(s.substr(run_start, pos - run_start));
    out->append(kReplacementChar);
    pos += subpart;
    run_start = pos;
  }
  out->append(s.substr(run_start));
}

size_t complete_prefix_length(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t subpart = 0;
    bool incomplete = false;
    const size_t len = sequence_length(s, pos, &subpart, &incomplete);
    if (len > 0) {
      pos += len;
    } else if (incomplete) {
      return pos;
    } else {
      pos += subpart;
    }
  }
  return pos;
}

void append_code_point(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t decode_code_point(std::string_view s, size_t pos, size_t len) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
  switch (len) {
    case 1:
      return p[0];
    case 2:
      return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3:
      return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default:
      return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) |
             (p[3] & 0x3Fu);
  }
}

const std::array<uint32_t, 256>& byte_to_code_point() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    std::vector<bool> printable(256, false);
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) t[b] = printable[b] ? static_cast<uint32_t>(b) : next++;
    return t;
  }();
  return table;
}

int code_point_to_byte(uint32_t cp) {
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> inv{};
    inv.fill(-1);
    const auto& fwd = byte_to_code_point();
    for (int b = 0; b < 256; ++b) inv[fwd[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

std::string byte_level_to_raw(const std::string& text) {
  std::string raw;
  raw.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = sequence_length(text, pos);
    if (len == 0) return text;
    const int b = code_point_to_byte(decode_code_point(text, pos, len));
    if (b < 0) return text;
    raw.push_back(static_cast<char>(b));
    pos += len;
  }
  return raw;
}

}  // namespace fs::utf8

namespace fs::utf8 {

std::string nfc(std::string_view s) {
  bool ascii = true;
  for (char c : s) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii || s.empty()) return std::string(s);
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                   &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return std::string(s);
  std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

bool code_point_before(std::string_view s, size_t end, uint32_t* cp, size_t* start) {
  if (end == 0) return false;
  size_t b = end - 1;
  while (b > 0 && end - b < 4 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  const size_t len = sequence_length(s, b);
  if (len == 0 || b + len != end) {  // not valid: treat the last byte as one unit
    *cp = 0xFFFD;
    *start = end - 1;
    return true;
  }
  *cp = decode_code_point(s, b, len);
  *start = b;
  return true;
}

bool code_point_at(std::string_view s, size_t pos, uint32_t* cp, size_t* len) {
  if (pos >= s.size()) return false;
  *len = sequence_length(s, pos);
  if (*len == 0) return false;
  *cp = decode_code_point(s, pos, *len);
  return true;
}

bool is_whitespace(uint32_t cp) {
  switch (cp) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x2000 && cp <= 0x200A);
  }
}

bool is_word_char(uint32_t cp) {
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  if (cp == 0x200C || cp == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

}  // namespace fs::utf8
