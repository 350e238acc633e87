// UTF-8 helpers shared by the tokenizers: validation with U+FFFD replacement (the same
// maximal-subpart rule as Rust's String::from_utf8_lossy, which HF `tokenizers` uses when
// decoding), and the GPT-2 byte <-> unicode map of byte-level BPE.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fs::utf8 {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid sequence at s[pos], 0 when the bytes there are not a complete valid sequence.
// When 0, *subpart_len (if given) is the length of the maximal invalid subpart to replace by one
// U+FFFD, and *incomplete is true when the sequence is a valid prefix cut by the end of s.
size_t sequence_length(std::string_view s, size_t pos, size_t* subpart_len = nullptr,
                       bool* incomplete = nullptr);

// True when s is entirely valid UTF-8.
bool is_valid(std::string_view s);

// Appends s to out with each maximal invalid subpart replaced by U+FFFD (from_utf8_lossy).
void append_lossy(std::string_view s, std::string* out);

// Length of the longest prefix of s that ends at a sequence boundary, treating invalid subparts as
// complete (they become U+FFFD) but a valid sequence cut by the end of s as incomplete.
size_t complete_prefix_length(std::string_view s);

// Appends the UTF-8 encoding of code point cp.
void append_code_point(uint32_t cp, std::string* out);

// Decodes the (valid) sequence at s[pos] of length len.
uint32_t decode_code_point(std::string_view s, size_t pos, size_t len);

// Unicode NFC of valid UTF-8 s (utf8proc); s unchanged when it is pure ASCII or not valid UTF-8.
std::string nfc(std::string_view s);

// The code point that ends just before s[end] (valid UTF-8 assumed) and its start; false at 0.
bool code_point_before(std::string_view s, size_t end, uint32_t* cp, size_t* start);
// The code point that starts at s[pos] and its length; false at the end or on invalid bytes.
bool code_point_at(std::string_view s, size_t pos, uint32_t* cp, size_t* len);

// Unicode White_Space (Rust's char::is_whitespace, which HF uses to strip around added tokens).
bool is_whitespace(uint32_t cp);
// A regex \w character (letters, marks, decimal digits, connector punctuation, joiners): what HF
// treats as part of a word around single_word added tokens.
bool is_word_char(uint32_t cp);

// GPT-2 byte-level map: every byte to a printable code point (bytes_to_unicode() in GPT-2's
// encoder.py).
const std::array<uint32_t, 256>& byte_to_code_point();
// Inverse map; -1 for code points that no byte maps to.
int code_point_to_byte(uint32_t cp);
// Text in the GPT-2 byte alphabet -> the raw bytes it stands for; text with any other character
// (or invalid UTF-8) is returned unchanged.
std::string byte_level_to_raw(const std::string& text);

}  // namespace fs::utf8
