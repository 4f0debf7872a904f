// SFT data: templates rendered to the exact strings their authors publish, the record shapes, errors that name
// FILE:LINE, label masks, truncation, and packing (whole examples, doc_start, determinism, one visit per epoch).
// Tokenization uses a byte encoder (id = byte + 3) so every expected id list is written out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "polyllama/data/sft_stream.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

constexpr int32_t kBos = 1, kEos = 2, kIgnore = -100;

const EncodeFn bytes = [](const std::string& text, std::vector<int32_t>& ids) {
  for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c) + 3);
};

std::string render_text(const ChatTemplate& t, const Conversation& c) {
  std::string s;
  for (const Segment& g : t.render(c)) s += (g.bos ? "<s>" : "") + g.text + (g.eos ? "</s>" : "");
  return s;
}

std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string p = dir + "/" + name;
  std::ofstream(p) << text;
  return p;
}

Conversation qa(const std::string& q, const std::string& a) { return {"", {{Role::user, q}, {Role::assistant, a}}}; }

}  // namespace

// Expected strings written from the templates' published formats: Stanford Alpaca's prompt, Meta's LLaMA-2
// chat format ([INST], <<SYS>>, BOS/EOS around each exchange), FastChat's vicuna_v1.1.
TEST(ChatTemplate, BuiltinsRenderThePublishedFormats) {
  const ChatTemplate alpaca = ChatTemplate::load("alpaca");
  EXPECT_EQ(render_text(alpaca, qa(alpaca.user_text("Add.", "2 3"), "5")),
            "<s>Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 3\n\n### Response:\n5</s>");
  const ChatTemplate l2 = ChatTemplate::load("llama2-chat");
  Conversation c{"Be brief.", {{Role::user, "Hi"}, {Role::assistant, "Hello"}, {Role::user, "Bye"},
                               {Role::assistant, "Ciao"}}};
  EXPECT_EQ(render_text(l2, c), "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello</s><s>[INST] Bye [/INST]Ciao</s>");
  c.system.clear();
  EXPECT_EQ(render_text(l2, c), "<s>[INST] Hi [/INST]Hello</s><s>[INST] Bye [/INST]Ciao</s>");
  const ChatTemplate v = ChatTemplate::load("vicuna");
  EXPECT_EQ(render_text(v, qa("Hi", "Hello")),
            "<s>A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the user's questions. USER: Hi ASSISTANT:Hello</s>");
  // Which parts are trained: only the answers.
  const std::vector<Segment> segs = l2.render(c);
  ASSERT_EQ(segs.size(), 4u);
  EXPECT_FALSE(segs[0].train);
  EXPECT_TRUE(segs[1].train);
  EXPECT_FALSE(segs[2].train);
  EXPECT_TRUE(segs[3].train);
}

TEST(ChatTemplate, FileTemplatesAndTheirErrors) {
  const std::string dir = test::temp_dir("tpl");
  const std::string f = write(dir, "mine.json",
                              R"({"system": "S", "user_format": "Q: {content}\nA:", "assistant_format": " {content}",
                                  "bos": false, "eos_after_assistant": false})");
  const ChatTemplate t = ChatTemplate::load(f);
  EXPECT_EQ(t.name, "mine");
  EXPECT_EQ(render_text(t, qa("x", "y")), "S\n\nQ: x\nA: y");
  // The answer format's prefix belongs to the prompt: a prompt for generation ends with it.
  EXPECT_EQ(t.render(qa("x", "y"))[0].text, "S\n\nQ: x\nA: ");
  EXPECT_EQ(ChatTemplate::from_json(t.to_json(), "round trip").to_json(), t.to_json());

  auto err = [&](const std::string& json) {
    const std::string p = write(dir, "bad.json", json);
    return test::error_of([&] { ChatTemplate::load(p); });
  };
  EXPECT_NE(err(R"({"user_fmt": "{content}"})").second.find("unknown key \"user_fmt\""), std::string::npos);
  EXPECT_NE(err(R"({"user_format": "no placeholder"})").second.find("user_format has no {content}"), std::string::npos);
  EXPECT_NE(err(R"({"bos": "yes"})").second.find("\"bos\" must be true or false"), std::string::npos);
  EXPECT_NE(err("{").second.find("not JSON"), std::string::npos);
  const auto [code, msg] = test::error_of([] { ChatTemplate::load("no-such-template"); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("alpaca"), std::string::npos) << msg;  // lists the built-ins
}

TEST(SftData, ReadsEveryRecordShape) {
  const std::string dir = test::temp_dir("sft-read");
  const ChatTemplate t = ChatTemplate::load("plain");
  SftRecords r;
  read_sft_file(write(dir, "a.json", R"([{"instruction": "i1", "output": "o1"},
                                          {"instruction": "i2", "input": "x", "output": "o2", "system": "s"}])"),
                t, false, r);
  read_sft_file(write(dir, "b.jsonl",
                      "{\"conversations\": [{\"from\": \"system\", \"value\": \"S\"}, {\"from\": \"human\", \"value\": "
                      "\"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}\n\n"
                      "{\"messages\": [{\"role\": \"user\", \"content\": \"q1\"}, {\"role\": \"assistant\", "
                      "\"content\": \"a1\"}, {\"role\": \"user\", \"content\": \"q2\"}, {\"role\": \"assistant\", "
                      "\"content\": \"a2\"}]}\n"),
                t, false, r);
  ASSERT_EQ(r.conversations.size(), 4u);
  EXPECT_EQ(r.conversations[0].turns[0].content, "i1");
  EXPECT_EQ(r.conversations[1].turns[0].content, "i2\n\nx");  // the template's input_format
  EXPECT_EQ(r.conversations[1].system, "s");
  EXPECT_EQ(r.conversations[2].system, "S");
  EXPECT_EQ(r.conversations[2].turns.size(), 2u);
  EXPECT_EQ(r.conversations[3].turns.size(), 4u);
  EXPECT_EQ(r.conversations[3].turns[3].content, "a2");
  EXPECT_EQ(r.skipped, 0);
}

TEST(SftData, BadRecordsNameFileAndLineOrAreCountedWhenSkipped) {
  const std::string dir = test::temp_dir("sft-bad");
  const ChatTemplate t = ChatTemplate::load("plain");
  const std::string f = write(dir, "bad.jsonl",
                              "{\"instruction\": \"ok\", \"output\": \"fine\"}\n"
                              "{\"instruction\": \"no output\"}\n"
                              "not json\n"
                              "{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\"}]}\n"
                              "{\"conversations\": [{\"from\": \"robot\", \"value\": \"a\"}]}\n"
                              "{\"instruction\": 5, \"output\": \"x\"}\n"
                              "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}\n");
  SftRecords r;
  const auto [code, msg] = test::error_of([&] { read_sft_file(f, t, false, r); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find(f + ":2: missing field \"output\""), std::string::npos) << msg;
  SftRecords s;
  read_sft_file(f, t, true, s);
  EXPECT_EQ(s.conversations.size(), 1u);
  EXPECT_EQ(s.skipped, 6);
  ASSERT_EQ(s.skip_examples.size(), 5u);
  EXPECT_NE(s.skip_examples[1].find(f + ":3: not valid JSON"), std::string::npos);
  EXPECT_NE(s.skip_examples[2].find(":4: turn 1 is assistant, expected user"), std::string::npos) << s.skip_examples[2];
  EXPECT_NE(s.skip_examples[3].find(":5: conversations[0]: unknown speaker \"robot\""), std::string::npos);
  EXPECT_NE(s.skip_examples[4].find(":6: field \"instruction\" is not a string"), std::string::npos);
  // An array file names the record.
  SftRecords a;
  const std::string arr = write(dir, "bad.json", R"([{"instruction": "a", "output": "b"}, {"output": "c"}])");
  EXPECT_NE(test::error_of([&] { read_sft_file(arr, t, false, a); }).second.find(arr + ": record 2: missing field"),
            std::string::npos);
}

// plain template: prompt "<s>" + "q\n", answer "a" + "</s>"; labels only on the answer and its EOS.
TEST(SftData, LabelsCoverAnswersOnly) {
  const ChatTemplate t = ChatTemplate::load("plain");
  SftTokenizeOptions o;
  o.max_tokens = 100;
  SftTokenStats st;
  const auto ex = tokenize_conversations({qa("q", "ab")}, t, bytes, o, &st);
  ASSERT_EQ(ex.size(), 1u);
  const std::vector<int32_t> ids = {kBos, 'q' + 3, '\n' + 3, 'a' + 3, 'b' + 3, kEos};
  EXPECT_EQ(ex[0].ids, ids);
  EXPECT_EQ(ex[0].train, (std::vector<uint8_t>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(st.trained_tokens, 3);
  EXPECT_EQ(st.tokens, 6);
}

TEST(SftData, TruncationCutsOrDrops) {
  const ChatTemplate t = ChatTemplate::load("plain");
  SftTokenizeOptions o;
  o.max_tokens = 6;  // <s> q q \n | a a a a </s>: 9 tokens
  SftTokenStats st;
  auto ex = tokenize_conversations({qa("qq", "aaaa"), qa("q", "a")}, t, bytes, o, &st);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].ids.size(), 6u);
  EXPECT_EQ(ex[0].train, (std::vector<uint8_t>{0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(st.truncated, 1);
  o.truncation = Truncation::drop;
  ex = tokenize_conversations({qa("qq", "aaaa"), qa("q", "a")}, t, bytes, o, &st);
  EXPECT_EQ(ex.size(), 1u);
  EXPECT_EQ(st.dropped, 1);
  o.truncation = Truncation::cut;  // a prompt that fills the window leaves nothing to learn: dropped
  o.max_tokens = 4;
  ex = tokenize_conversations({qa("qqqq", "a")}, t, bytes, o, &st);
  EXPECT_TRUE(ex.empty());
  EXPECT_EQ(st.dropped, 1);
}

namespace {

// Examples of 2..n_max tokens whose ids encode (example, position) so a row can be decoded back.
std::vector<SftExample> numbered(int64_t n, int64_t max_len) {
  std::vector<SftExample> v;
  for (int64_t e = 0; e < n; ++e) {
    SftExample x;
    const int64_t len = 2 + (e * 7919) % (max_len - 1);
    for (int64_t j = 0; j < len; ++j) x.ids.push_back(static_cast<int32_t>(1000 * e + j + 10)), x.train.push_back(j >= 1);
    v.push_back(x);
  }
  return v;
}

}  // namespace

TEST(SftPacking, RowsHoldWholeExamplesEachOncePerEpoch) {
  const int64_t T = 40;
  SftPackingConfig pc;
  pc.seq_len = T;
  pc.seed = 99;
  const SftPackedStream s(numbered(300, 30), pc, "test");
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    int64_t base = 0;
    for (int64_t e = 0; e < epoch; ++e) base += s.rows(e);
    std::map<int64_t, int> seen;
    int64_t used = 0;
    for (int64_t r = 0; r < s.rows(epoch); ++r) {
      std::vector<int32_t> in(T), tg(T), ds(T);
      s.sample_segments(base + r, in.data(), tg.data(), ds.data());
      for (int64_t t = 0; t < T;) {
        const int64_t start = ds[t];
        ASSERT_EQ(start, t);  // each segment starts where doc_start says
        if (in[t] == pc.pad_id) {  // padding runs to the row's end and is never a target
          for (; t < T; ++t) ASSERT_TRUE(in[t] == pc.pad_id && tg[t] == kIgnore && ds[t] == start);
          break;
        }
        const int64_t e = (in[t] - 10) / 1000;
        const int64_t len = 2 + (e * 7919) % 29;
        for (int64_t j = 0; j < len - 1; ++j, ++t) {
          ASSERT_EQ(in[t], 1000 * e + j + 10);
          ASSERT_EQ(tg[t], 1000 * e + j + 11);  // the next token; every label after the first is trained here
          ASSERT_EQ(ds[t], start);
        }
        used += len - 1;
        seen[e] += 1;
      }
    }
    EXPECT_EQ(seen.size(), 300u);
    for (const auto& [e, k] : seen) ASSERT_EQ(k, 1) << "example " << e << " epoch " << epoch;
    EXPECT_NEAR(s.fill(epoch), static_cast<double>(used) / static_cast<double>(s.rows(epoch) * T), 1e-12);
    EXPECT_GT(s.fill(epoch), 0.95);  // first fit over 64 open rows leaves little padding
  }
}

TEST(SftPacking, SampleIsAPureFunctionOfSeedAndIndex) {
  SftPackingConfig pc;
  pc.seq_len = 32;
  const SftPackedStream a(numbered(200, 20), pc, "a"), b(numbered(200, 20), pc, "b");
  const int64_t T = 32;
  auto row = [&](const SftPackedStream& s, int64_t i) {
    std::vector<int32_t> in(T), tg(T), ds(T);
    s.sample_segments(i, in.data(), tg.data(), ds.data());
    in.insert(in.end(), ds.begin(), ds.end());
    return in;
  };
  // b is read backwards from a later epoch first (a resumed run, or another dp rank's share): same rows.
  const int64_t n = 3 * a.rows(0);
  std::vector<std::vector<int32_t>> forward;
  for (int64_t i = 0; i < n; ++i) forward.push_back(row(a, i));
  for (int64_t i = n; i-- > 0;) ASSERT_EQ(row(b, i), forward[static_cast<size_t>(i)]) << i;
  // Another seed is another order.
  pc.seed = 7;
  const SftPackedStream c(numbered(200, 20), pc, "c");
  int differ = 0;
  for (int64_t i = 0; i < 10; ++i) differ += row(c, i) != row(a, i);
  EXPECT_GT(differ, 5);
  // Without packing every row is one example and padding.
  pc.pack = false;
  const SftPackedStream d(numbered(50, 20), pc, "d");
  EXPECT_EQ(d.rows(0), 50);
}

// sft --max-examples: the kept indices were computed independently in Python (splitmix64 written out from its
// published constants, keys sorted), and every smaller size must be a subset of a larger one under one seed.
TEST(SftSubset, SeededNestedAndMachineIndependent) {
  EXPECT_EQ(sft_subset(12, 3, 1234), (std::vector<size_t>{1, 3, 11}));
  EXPECT_EQ(sft_subset(12, 6, 1234), (std::vector<size_t>{1, 3, 4, 6, 10, 11}));
  EXPECT_EQ(sft_subset(12, 3, 7), (std::vector<size_t>{0, 3, 9}));
  EXPECT_EQ(sft_subset(12, 6, 7), (std::vector<size_t>{0, 1, 2, 3, 4, 9}));
  EXPECT_EQ(sft_subset(4, 9, 7), (std::vector<size_t>{0, 1, 2, 3}));
  const std::vector<size_t> small = sft_subset(5000, 1000, 99), large = sft_subset(5000, 2500, 99);
  ASSERT_EQ(small.size(), 1000u);
  EXPECT_TRUE(std::is_sorted(large.begin(), large.end()));
  EXPECT_TRUE(std::includes(large.begin(), large.end(), small.begin(), small.end()));
  // A uniform draw: about half of the kept examples come from the file's first half (binomial sd ~16 of 1000;
  // 5 sd either side).
  const auto first_half = std::count_if(small.begin(), small.end(), [](size_t i) { return i < 2500; });
  EXPECT_NEAR(static_cast<double>(first_half), 500.0, 80.0);
}
