// Token shards and the `polyllama data` pipeline, with ranks played in one process (plain ints):
// round trip through writer and reader; refusal of another tokenizer and of damaged files; a dataset written
// by any number of ranks equals the serial tokenization token for token; gzip input equals plain input;
// malformed JSONL names FILE:LINE (also when the bad line lies in another rank's byte range) or is counted and
// skipped; and the stream equals what `pretrain`'s in-memory reader (tokenize_text_files) makes.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "polyllama/core/error.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/data/shards.hpp"
#include "polyllama/data/text_input.hpp"
#include "polyllama/data/token_windows.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace polyllama {
using polyllama::test::error_of;

namespace {

// A stand-in tokenizer: one id per byte (byte + 3), EOS = 2, vocabulary 259.
const EncodeFn kByteEncoder = [](const std::string& text, std::vector<int32_t>& ids) {
  ids.clear();
  for (const char c : text) ids.push_back(static_cast<unsigned char>(c) + 3);
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(gz);
}


// Runs the pipeline as world_size ranks into one directory, merges and writes metadata, and returns the dir.
std::string make_dataset(const std::string& dir, const std::vector<std::string>& paths, const TextInputOptions& in,
                         int world_size, int64_t max_shard_tokens = 1 << 20, const EncodeFn& encode = kByteEncoder,
                         int64_t vocab = 259, uint32_t eos = 2, int threads = 1) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::vector<InputFile> inputs = describe_inputs(paths, in);
  ShardPipelineOptions opts;
  opts.max_shard_tokens = max_shard_tokens;
  opts.vocab_size = vocab;
  opts.eos_id = eos;
  opts.threads = threads;
  std::vector<RankResult> ranks;
  for (int r = 0; r < world_size; ++r)  // through JSON, as the ranks' results travel under MPI
    ranks.push_back(rank_result_from_json(
        rank_result_to_json(tokenize_to_shards(inputs, in, opts, encode, dir, r, world_size))));
  DatasetMeta base;
  base.tokenizer_checksum = "00000000deadbeef";
  base.vocab_size = vocab;
  base.eos_id = static_cast<int32_t>(eos);
  write_dataset_metadata(dir, merge_rank_results(ranks, base));
  return dir;
}

std::vector<uint32_t> stream_of(const ShardReader& r) {
  std::vector<uint32_t> all(static_cast<size_t>(r.tokens()));
  r.read_tokens(0, r.tokens(), all.data());
  return all;
}

std::vector<int64_t> doc_lengths(const ShardReader& r) {
  std::vector<int64_t> v;
  for (int64_t d = 0; d < r.documents(); ++d) v.push_back(r.doc_length(d));
  return v;
}

// Expected stream under kByteEncoder for documents given as text.
std::vector<uint32_t> byte_stream(const std::vector<std::string>& docs) {
  std::vector<uint32_t> s;
  for (const std::string& d : docs) {
    for (const char c : d) s.push_back(static_cast<unsigned char>(c) + 3);
    s.push_back(2);
  }
  return s;
}

// Text with blank-line documents and the awkward cases: CRLF, whitespace-only lines, runs of blank lines,
// leading blank lines, long lines, UTF-8, no final newline.
std::string blank_line_text(uint64_t seed, int docs) {
  std::string t = "\n \n";
  for (int d = 0; d < docs; ++d) {
    const uint64_t lines = 1 + random_bits(seed, 1, static_cast<uint64_t>(d)) % 4;
    for (uint64_t l = 0; l < lines; ++l) {
      const uint64_t len = random_bits(seed, 2, static_cast<uint64_t>(d) * 8 + l) % 90;
      for (uint64_t c = 0; c < len; ++c)  // bytes, not characters: malformed UTF-8 included
        t += "abcdefgh \xE4\xB8\xAD\xE6\x96\x87,\t"[random_bits(seed, 3, c + 100 * l + 1000 * static_cast<uint64_t>(d)) % 13];
      t += (d % 7 == 3) ? "\r\n" : "\n";
    }
    t += (d % 5 == 0) ? "\n \t\n\n" : "\n";
  }
  t += "last document without a final newline";
  return t;
}

TEST(Shards, WriterReaderRoundTripAcrossShards) {
  const std::string dir = test::temp_dir("shards_rt");
  std::vector<std::vector<int32_t>> docs;
  std::vector<uint32_t> stream;
  std::vector<RankResult> ranks;
  for (int w = 0; w < 3; ++w) {  // three writers, small shards: documents land in several shards each
    ShardWriter writer(dir, w, 50);
    for (int d = 0; d < 20; ++d) {
      std::vector<int32_t> doc;
      const uint64_t n = random_bits(5, static_cast<uint64_t>(w), static_cast<uint64_t>(d)) % 30;
      for (uint64_t i = 0; i < n; ++i)
        doc.push_back(static_cast<int32_t>(3 + random_bits(6, static_cast<uint64_t>(d), i) % 900));
      writer.add_document(doc.data(), static_cast<int64_t>(doc.size()), 2);
      stream.insert(stream.end(), doc.begin(), doc.end());
      stream.push_back(2);
      docs.push_back(doc);
    }
    writer.finish();
    RankResult r;
    r.shards = writer.shards();
    ranks.push_back(r);
  }
  EXPECT_GT(ranks[0].shards.size(), 2u);
  DatasetMeta base;
  base.tokenizer_checksum = "1111222233334444";
  base.vocab_size = 1000;
  base.eos_id = 2;
  DatasetMeta meta = merge_rank_results(ranks, base);
  meta.documents = static_cast<int64_t>(docs.size());  // no inputs were read: set the totals by hand
  meta.tokens = static_cast<int64_t>(stream.size());
  write_dataset_metadata(dir, meta);

  const ShardReader r(dir, "1111222233334444");
  ASSERT_EQ(r.documents(), 60);
  ASSERT_EQ(stream_of(r), stream);
  for (int64_t d = 0; d < r.documents(); ++d) {
    const auto& doc = docs[static_cast<size_t>(d)];
    ASSERT_EQ(r.doc_length(d), static_cast<int64_t>(doc.size()) + 1);
    const uint32_t* t = r.doc_tokens(d);
    for (size_t i = 0; i < doc.size(); ++i) ASSERT_EQ(t[i], static_cast<uint32_t>(doc[i]));
    ASSERT_EQ(t[doc.size()], 2u);
  }
  for (uint64_t k = 0; k < 200; ++k) {  // random ranges, many crossing shard boundaries
    const auto a = static_cast<int64_t>(random_bits(9, 0, k) % stream.size());
    const auto n = static_cast<int64_t>(random_bits(9, 1, k) % (stream.size() - static_cast<size_t>(a)));
    std::vector<uint32_t> got(static_cast<size_t>(n));
    r.read_tokens(a, n, got.data());
    ASSERT_TRUE(std::equal(got.begin(), got.end(), stream.begin() + a));
  }
  r.verify_checksums();

  // Damage: a flipped byte fails the checksum naming the shard; a truncated shard fails to open.
  const std::string victim = dir + "/" + meta.shards[1].name + ".tok";
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4);
    f.put('\x7f');
  }
  auto [code, msg] = error_of([&] { ShardReader(dir).verify_checksums(); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find(meta.shards[1].name + ".tok fails its checksum"), std::string::npos) << msg;
  fs::resize_file(victim, fs::file_size(victim) - 4);
  std::tie(code, msg) = error_of([&] { ShardReader r2(dir); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(Shards, RefusesAnotherTokenizerNamingBothChecksums) {
  const std::string tmp = test::temp_dir("shards_ck");
  write_file(tmp + "/a.txt", "one document\n");
  const std::string dir = make_dataset(tmp + "/ds", {tmp + "/a.txt"}, TextInputOptions{}, 1);
  const auto [code, msg] = error_of([&] { ShardReader r(dir, "abcdefabcdefabcd"); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("00000000deadbeef"), std::string::npos) << msg;
  EXPECT_NE(msg.find("abcdefabcdefabcd"), std::string::npos) << msg;
  EXPECT_EQ(ShardReader(dir, "00000000deadbeef").documents(), 1);
  const auto [code2, msg2] = error_of([&] { ShardReader r(tmp + "/nothing"); });
  EXPECT_EQ(code2, 1);
  EXPECT_NE(msg2.find("not a token dataset"), std::string::npos) << msg2;
}

TEST(Shards, AnyNumberOfRanksWritesTheSerialStream) {
  const std::string tmp = test::temp_dir("shards_ranks");
  TextInputOptions blank;
  blank.blank_line_docs = true;
  // Two splittable text files, a small one and a one-document file (not splittable with --blank-line-docs
  // off is tested below), and a JSONL file, in one dataset.
  write_file(tmp + "/a.txt", blank_line_text(1, 300));
  write_file(tmp + "/b.txt", blank_line_text(2, 3));
  write_file(tmp + "/empty.txt", "");
  std::string jsonl = "\xEF\xBB\xBF{\"text\": \"first\"}\n\n";
  for (int i = 0; i < 200; ++i)
    jsonl += "{\"id\": " + std::to_string(i) + ", \"text\": \"line " + std::to_string(i) + " \\u4e2d \\n x\"}" +
             (i % 9 == 0 ? "\r\n" : "\n");
  jsonl += "{\"text\": \"   \"}\n{\"text\": \"no newline at the end\"}";
  write_file(tmp + "/c.jsonl", jsonl);
  const std::vector<std::string> paths = {tmp + "/a.txt", tmp + "/empty.txt", tmp + "/c.jsonl", tmp + "/b.txt"};

  const ShardReader one(make_dataset(tmp + "/w1", paths, blank, 1));
  const std::vector<uint32_t> serial = stream_of(one);
  std::vector<std::string> docs;  // the serial reader's documents give the same stream
  for (const std::string& d : read_all_documents(describe_inputs(paths, blank), blank)) docs.push_back(d);
  ASSERT_EQ(serial, byte_stream(docs));
  EXPECT_EQ(one.meta().inputs[2].documents, 202);  // 200 + first + last; the whitespace-only one is empty
  EXPECT_EQ(one.meta().inputs[2].empty, 1);
  for (int world : {2, 3, 4, 7, 16}) {
    const ShardReader r(make_dataset(tmp + "/w" + std::to_string(world), paths, blank, world, 997));
    EXPECT_EQ(stream_of(r), serial) << world << " ranks";
    EXPECT_EQ(doc_lengths(r), doc_lengths(one)) << world << " ranks";
    for (size_t f = 0; f < paths.size(); ++f) {
      EXPECT_EQ(r.meta().inputs[f].documents, one.meta().inputs[f].documents);
      EXPECT_EQ(r.meta().inputs[f].tokens, one.meta().inputs[f].tokens);
      EXPECT_EQ(r.meta().inputs[f].bytes, static_cast<int64_t>(fs::file_size(paths[f])));
    }
  }
  // Threads do not change the output either.
  EXPECT_EQ(stream_of(ShardReader(make_dataset(tmp + "/t3", paths, blank, 2, 1 << 20, kByteEncoder, 259, 2, 3))),
            serial);
  // One document per file: files are not split, and ranks take whole files.
  const TextInputOptions whole;
  const ShardReader w1(make_dataset(tmp + "/f1", paths, whole, 1));
  EXPECT_EQ(w1.documents(), 2 + 202);  // a.txt and b.txt whole (empty.txt is empty), c.jsonl per line
  EXPECT_EQ(stream_of(ShardReader(make_dataset(tmp + "/f5", paths, whole, 5))), stream_of(w1));
}

TEST(Shards, GzipInputEqualsPlainInput) {
  const std::string tmp = test::temp_dir("shards_gz");
  const std::string text = blank_line_text(3, 100);
  std::string jsonl;
  for (int i = 0; i < 50; ++i) jsonl += "{\"body\": \"document " + std::to_string(i) + "\"}\n";
  write_file(tmp + "/a.txt", text);
  write_gzip(tmp + "/a.txt.gz", text);
  write_file(tmp + "/b.jsonl", jsonl);
  write_gzip(tmp + "/b.jsonl.gz", jsonl);
  TextInputOptions in;
  in.blank_line_docs = true;
  in.text_field = "body";
  const auto inputs = describe_inputs({tmp + "/a.txt.gz", tmp + "/b.jsonl.gz"}, in);
  EXPECT_TRUE(inputs[0].gzip && inputs[1].gzip && !inputs[0].splittable && inputs[1].format == InputFormat::jsonl);
  const auto plain = stream_of(ShardReader(make_dataset(tmp + "/p", {tmp + "/a.txt", tmp + "/b.jsonl"}, in, 3)));
  const ShardReader gz(make_dataset(tmp + "/g", {tmp + "/a.txt.gz", tmp + "/b.jsonl.gz"}, in, 3));
  EXPECT_EQ(stream_of(gz), plain);
  EXPECT_EQ(gz.meta().inputs[1].documents, 50);
  EXPECT_TRUE(gz.meta().inputs[0].gzip);
}

TEST(Shards, MalformedJsonlNamesFileAndLine) {
  const std::string tmp = test::temp_dir("shards_bad");
  std::string jsonl;
  for (int i = 1; i <= 400; ++i) {
    if (i == 371) jsonl += "{\"text\": \"unterminated}\n";
    else if (i == 380) jsonl += "{\"content\": \"no text field\"}\n";
    else if (i == 390) jsonl += "[1, 2]\n";
    else jsonl += "{\"text\": \"document number " + std::to_string(i) + "\"}\n";
  }
  const std::string path = tmp + "/bad.jsonl";
  write_file(path, jsonl);
  TextInputOptions in;
  for (int world : {1, 2, 4}) {  // the bad lines lie in the last rank's byte range
    const auto [code, msg] = error_of([&] { make_dataset(tmp + "/ds", {path}, in, world); });
    EXPECT_EQ(code, 1);
    EXPECT_NE(msg.find(path + ":371: malformed JSON"), std::string::npos) << world << " ranks: " << msg;
  }
  in.skip_invalid = true;
  const ShardReader r(make_dataset(tmp + "/ds", {path}, in, 2));
  EXPECT_EQ(r.meta().skipped, 3);
  EXPECT_EQ(r.documents(), 397);
  // The examples name file:line and, for a missing field, the keys that are there.
  const std::vector<InputFile> inputs = describe_inputs({path}, in);
  DocumentReader reader(inputs, plan_pieces(inputs, in, 1, 2), in);
  std::string text;
  int64_t file = 0;
  while (reader.next(text, file)) {}
  ASSERT_EQ(reader.skip_examples().size(), 3u);
  EXPECT_NE(reader.skip_examples()[1].find(path + ":380: no field 'text' (keys: content"), std::string::npos)
      << reader.skip_examples()[1];
  EXPECT_NE(reader.skip_examples()[2].find(path + ":390: not a JSON object"), std::string::npos);

  const auto [code, msg] = error_of([&] { describe_inputs({tmp + "/missing.jsonl"}, in); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("input file not found: " + tmp + "/missing.jsonl"), std::string::npos) << msg;
}

TEST(Shards, OutputDirectoryIsReplacedOnlyWhenAllowed) {
  const std::string tmp = test::temp_dir("shards_out");
  const std::string out = tmp + "/ds";
  std::string t = prepare_output_dir(out, false);
  EXPECT_EQ(t, out + ".tmp");
  write_file(t + "/metadata.json", "{}");
  commit_output_dir(t, out);
  EXPECT_TRUE(fs::exists(out + "/metadata.json") && !fs::exists(t));
  EXPECT_EQ(error_of([&] { prepare_output_dir(out, false); }).first, 1);  // exists: needs --overwrite
  t = prepare_output_dir(out, true);
  write_file(t + "/metadata.json", "{\"new\": 1}");
  commit_output_dir(t, out);
  EXPECT_NE(std::ifstream(out + "/metadata.json").get(), EOF);
  fs::create_directories(tmp + "/other");
  write_file(tmp + "/other/precious.txt", "x");
  const auto [code, msg] = error_of([&] { prepare_output_dir(tmp + "/other", true); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("not a token dataset"), std::string::npos) << msg;
  EXPECT_TRUE(fs::exists(tmp + "/other/precious.txt"));
}

TEST(Shards, SameStreamAsPretrainsTextReader) {
  const std::string model = test::shared_data("tokenizers/llama2-tokenizer.model");
  const std::string zh = test::shared_data("corpora/zh/chinese-poetry_shijing.txt");
  if (model.empty() || zh.empty()) GTEST_SKIP() << "needs ../shared/data (LLaMA 2 tokenizer, shijing)";
  const Tokenizer tok = Tokenizer::from_file(model);
  const EncodeFn encode = [&](const std::string& text, std::vector<int32_t>& ids) { ids = tok.encode(text); };
  TextInputOptions in;
  in.blank_line_docs = true;
  const std::string tmp = test::temp_dir("shards_pt");
  const ShardReader r(make_dataset(tmp + "/ds", {zh}, in, 3, 1 << 20, encode, tok.vocab_size(),
                                   static_cast<uint32_t>(tok.eos_id())));
  const TextCorpus c = tokenize_text_files({zh}, tok, true, 0);
  const std::vector<uint32_t> s = stream_of(r);
  ASSERT_EQ(s.size(), c.train.size());
  EXPECT_TRUE(std::equal(s.begin(), s.end(), c.train.begin(),
                         [](uint32_t a, int32_t b) { return a == static_cast<uint32_t>(b); }));
  EXPECT_EQ(r.documents(), c.documents);
}

}  // namespace
}  // namespace polyllama
