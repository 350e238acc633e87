#include "loadgen/sse_parser.h"

#include <gtest/gtest.h>

namespace fs::loadgen {
namespace {

std::vector<std::string> parse_in_pieces(const std::string& stream, size_t piece) {
  SseParser parser;
  std::vector<std::string> events;
  for (size_t i = 0; i < stream.size(); i += piece) {
    parser.feed(std::string_view(stream).substr(i, piece), &events);
  }
  parser.finish(&events);
  return events;
}

TEST(SseParser, SplitsEventsFedInAnyPieces) {
  const std::string stream =
      "data: {\"a\":1}\n\n: keep-alive comment\n\nevent: message\ndata: {\"b\":2}\n\n"
      "data: [DONE]\n\n";
  for (size_t piece : {1, 2, 3, 7, 1000}) {
    const auto events = parse_in_pieces(stream, piece);
    ASSERT_EQ(events.size(), 3u) << piece;
    EXPECT_EQ(events[0], "{\"a\":1}");
    EXPECT_EQ(events[1], "{\"b\":2}");
    EXPECT_EQ(events[2], "[DONE]");
  }
}

TEST(SseParser, HandlesCrlfNoSpaceMultilineAndUnterminatedLastEvent) {
  const auto events = parse_in_pieces("data:x\r\n\r\ndata: line1\ndata: line2\n\ndata: tail", 2);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], "x");
  EXPECT_EQ(events[1], "line1\nline2");
  EXPECT_EQ(events[2], "tail");
}

TEST(StreamChunk, CompletionTextAndFinishReason) {
  const auto c = parse_stream_chunk(
      R"({"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" hi","logprobs":null,"finish_reason":null}],"usage":null})");
  EXPECT_EQ(c.text, " hi");
  EXPECT_TRUE(c.error.empty());
  EXPECT_FALSE(c.num_completion_tokens.has_value());  // "usage": null on every chunk
  const auto f =
      parse_stream_chunk(R"({"choices":[{"index":0,"text":"","finish_reason":"length"}]})");
  EXPECT_TRUE(f.text.empty());
  EXPECT_EQ(f.finish_reason, "length");
  EXPECT_TRUE(c.token);
  EXPECT_FALSE(f.token);  // a finish chunk without text carries no token
  // A token whose text is empty (part of a character) is still a token; the last token's chunk
  // may carry the finish reason too (vLLM).
  EXPECT_TRUE(parse_stream_chunk(R"({"choices":[{"index":0,"text":"","finish_reason":null}]})").token);
  EXPECT_TRUE(parse_stream_chunk(R"({"choices":[{"text":"x","finish_reason":"stop"}]})").token);
}

TEST(StreamChunk, ChatRoleAndEmptyDeltasCarryNoText) {
  EXPECT_TRUE(
      parse_stream_chunk(
          R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})")
          .text.empty());
  EXPECT_TRUE(parse_stream_chunk(R"({"choices":[{"index":0,"delta":{}}]})").text.empty());
  EXPECT_TRUE(
      parse_stream_chunk(R"({"choices":[{"index":0,"delta":{"content":null}}]})").text.empty());
  EXPECT_EQ(parse_stream_chunk(R"({"choices":[{"delta":{"content":"Hel"}}]})").text, "Hel");
  EXPECT_EQ(parse_stream_chunk(R"({"choices":[{"delta":{"reasoning_content":"hmm"}}]})").text,
            "hmm");
  // The opening role chunk is no token; an empty content delta is one; a null one is not.
  EXPECT_FALSE(
      parse_stream_chunk(
          R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})")
          .token);
  EXPECT_TRUE(parse_stream_chunk(R"({"choices":[{"delta":{"content":""}}]})").token);
  EXPECT_FALSE(parse_stream_chunk(R"({"choices":[{"delta":{"content":null}}]})").token);
  EXPECT_FALSE(parse_stream_chunk(R"({"choices":[{"index":0,"delta":{}}]})").token);
}

TEST(StreamChunk, UsageOnlyFinalChunk) {
  const auto c = parse_stream_chunk(
      R"({"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}})");
  EXPECT_TRUE(c.text.empty());
  EXPECT_FALSE(c.token);
  ASSERT_TRUE(c.num_prompt_tokens && c.num_completion_tokens);
  EXPECT_EQ(*c.num_prompt_tokens, 12);
  EXPECT_EQ(*c.num_completion_tokens, 8);
}

TEST(StreamChunk, DoneErrorsAndGarbage) {
  EXPECT_TRUE(parse_stream_chunk("[DONE]").done);
  EXPECT_TRUE(parse_stream_chunk(" [DONE]\n").done);
  EXPECT_EQ(parse_stream_chunk(R"({"error":{"message":"boom","type":"x"}})").error, "boom");
  EXPECT_FALSE(parse_stream_chunk(R"({"error":"flat"})").error.empty());
  EXPECT_FALSE(parse_stream_chunk("not json").error.empty());
  EXPECT_FALSE(parse_stream_chunk("[1,2]").error.empty());
  const auto empty = parse_stream_chunk("");
  EXPECT_TRUE(empty.error.empty() && empty.text.empty() && !empty.done);
  // Odd but valid: choices not an array, text not a string, error: null.
  EXPECT_TRUE(parse_stream_chunk(R"({"choices":{},"error":null})").error.empty());
  EXPECT_TRUE(parse_stream_chunk(R"({"choices":[{"text":5}]})").text.empty());
}

}  // namespace
}  // namespace fs::loadgen
