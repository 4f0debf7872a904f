// safetensors reading and writing (src/ckpt/safetensors.cpp):
//  * fp16/bf16 <-> fp32 against hand-computed bit patterns, an exhaustive round trip of every 16-bit pattern, and
//    round-to-nearest-even against a slow independent reference (nearest of the two neighbouring halves found by
//    bisection) on a million random floats;
//  * the writer against the byte strings the reference implementation's own tests assert (safetensors'
//    tensor.rs: test_serialization, test_empty, test_serialization_forced_alignement);
//  * round trips of F32, F16 and BF16 tensors in one file, and the reference's file order;
//  * a list of broken and hostile headers, each rejected with a message naming the file and the tensor.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "polyllama/ckpt/safetensors.hpp"
#include "test_support.hpp"

using namespace polyllama;
namespace fs = std::filesystem;

namespace {

float f32_bits(uint32_t u) { return std::bit_cast<float>(u); }
uint32_t bits_f32(float f) { return std::bit_cast<uint32_t>(f); }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A file with the given header text (its true length in the length field unless `claimed` is given) and
// `data_bytes` zero bytes of data.
std::string make_file(const std::string& dir, const std::string& name, const std::string& header, size_t data_bytes,
                      uint64_t claimed = UINT64_MAX) {
  const std::string path = dir + "/" + name;
  write_bytes(path, le64(claimed == UINT64_MAX ? header.size() : claimed) + header + std::string(data_bytes, '\0'));
  return path;
}

// The message of the Error that opening `path` throws, or "" when it opens.
std::string open_error(const std::string& path) {
  try {
    SafetensorsReader r(path);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kExitBadInput) << e.what();
    return e.what();
  }
  return "";
}

// The nearest half (by value) to x, ties to the even bit pattern, found without any bit tricks: bisection over
// the positive half patterns, which are ordered like their values.
uint16_t f16_reference(float x) {
  if (std::isnan(x)) return 0x7e00;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 65520.0) return sign | 0x7c00;  // halfway between 65504 and the next binade's 65536 rounds up
  uint16_t lo = 0, hi = 0x7bff;            // largest pattern whose value <= a
  while (lo < hi) {
    const auto mid = static_cast<uint16_t>((lo + hi + 1) / 2);
    if (static_cast<double>(f16_to_f32(mid)) <= a) lo = mid;
    else hi = static_cast<uint16_t>(mid - 1);
  }
  if (lo == 0x7bff) return sign | lo;
  const double below = f16_to_f32(lo), above = f16_to_f32(static_cast<uint16_t>(lo + 1));
  const double dl = a - below, du = above - a;
  const uint16_t pick = dl < du ? lo : du < dl ? static_cast<uint16_t>(lo + 1) : (lo % 2 == 0 ? lo : lo + 1);
  return sign | pick;
}

uint16_t bf16_reference(float x) {
  if (std::isnan(x)) return 0x7fc0;
  const uint32_t u = bits_f32(x), lo = u >> 16;
  const double a = static_cast<double>(x);
  const double below = bf16_to_f32(static_cast<uint16_t>(lo)), above = bf16_to_f32(static_cast<uint16_t>(lo + 1));
  // Truncation rounds toward zero; for positive x `above` is farther from zero, for negative x too (sign bit set).
  const double dl = std::fabs(a - below), du = std::fabs(above - a);
  if (dl < du) return static_cast<uint16_t>(lo);
  if (du < dl) return static_cast<uint16_t>(lo + 1);
  return static_cast<uint16_t>(lo % 2 == 0 ? lo : lo + 1);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// conversions

TEST(Safetensors, Bf16BitPatterns) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.5f), 0xc020);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(65504.0f), 0x4780);               // 0x477fe000: the low half 0xe000 rounds up to 65536
  EXPECT_EQ(f32_to_bf16(f32_bits(0x3f808000)), 0x3f80);  // 1 + 2^-8: a tie, to even (down)
  EXPECT_EQ(f32_to_bf16(f32_bits(0x3f818000)), 0x3f82);  // 1 + 3 * 2^-8: a tie, to even (up)
  EXPECT_EQ(f32_to_bf16(f32_bits(0x3f808001)), 0x3f81);  // just above the tie
  EXPECT_EQ(f32_to_bf16(f32_bits(0x3f807fff)), 0x3f80);  // just below it
  EXPECT_EQ(f32_to_bf16(f32_bits(0x00010000)), 0x0001);  // the smallest bf16 subnormal, exact
  EXPECT_EQ(f32_to_bf16(f32_bits(0x00008000)), 0x0000);  // half of it: a tie, to even (zero)
  EXPECT_EQ(f32_to_bf16(f32_bits(0x00018000)), 0x0002);  // 1.5 units: a tie, to even (2)
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // overflows to infinity
  const uint16_t nan = f32_to_bf16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x007f, 0);
  EXPECT_EQ(f32_to_bf16(f32_bits(0x7f800001)) & 0x7fc0, 0x7fc0);  // a signalling NaN stays NaN (quiet)
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xc020), -2.5f);
  EXPECT_EQ(bits_f32(bf16_to_f32(0x0001)), 0x00010000u);
  EXPECT_EQ(bf16_to_f32(0xff80), -std::numeric_limits<float>::infinity());
}

TEST(Safetensors, F16BitPatterns) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.5f), 0xc100);
  EXPECT_EQ(f32_to_f16(0.1f), 0x2e66);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);               // the largest finite half
  EXPECT_EQ(f32_to_f16(f32_bits(0x477fefff)), 0x7bff);  // just below 65520 still rounds down
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);              // the tie with 65536 rounds to even: infinity
  EXPECT_EQ(f32_to_f16(-1e6f), 0xfc00);
  EXPECT_EQ(f32_to_f16(0x1p-14f), 0x0400);               // smallest normal
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);               // smallest subnormal
  EXPECT_EQ(f32_to_f16(1023 * 0x1p-24f), 0x03ff);        // largest subnormal
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);               // half a unit: a tie, to even (zero)
  EXPECT_EQ(f32_to_f16(0x1p-25f + 0x1p-40f), 0x0001);    // just above the tie
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);           // 1.5 units: a tie, to even (2)
  EXPECT_EQ(f32_to_f16(5 * 0x1p-25f), 0x0002);           // 2.5 units: a tie, to even (2)
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);        // a tie between 1 and 1 + 2^-10: even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);    // a tie between 0x3c01 and 0x3c02: even
  EXPECT_EQ(f32_to_f16(2047 * 0x1p-25f), 0x0400);        // rounding a subnormal up into the smallest normal
  EXPECT_EQ(f32_to_f16(1e-10f), 0x0000);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::quiet_NaN()) & 0x7e00, 0x7e00);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0xc100), -2.5f);
  EXPECT_EQ(f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
}

TEST(Safetensors, EverySixteenBitPatternRoundTrips) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const auto p = static_cast<uint16_t>(h);
    const float f = f16_to_f32(p), b = bf16_to_f32(p);
    if (std::isnan(f)) EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
    else ASSERT_EQ(f32_to_f16(f), p) << std::hex << h;
    if (std::isnan(b)) EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(b))));
    else ASSERT_EQ(f32_to_bf16(b), p) << std::hex << h;
  }
}

TEST(Safetensors, RoundToNearestEvenMatchesSlowReference) {
  std::mt19937_64 rng(7);
  int64_t checked = 0;
  for (int i = 0; i < 1000000; ++i) {
    // Random floats across the whole half range (and some beyond), plus exact ties built from half neighbours.
    float x;
    if (i % 4 == 3) {
      const auto h = static_cast<uint16_t>(rng() % 0x7bff);
      x = static_cast<float>((static_cast<double>(f16_to_f32(h)) + f16_to_f32(static_cast<uint16_t>(h + 1))) / 2);
      if (rng() & 1) x = -x;
    } else {
      const uint32_t exp = 100 + static_cast<uint32_t>(rng() % 45);  // 2^-27 .. 2^17
      x = f32_bits((static_cast<uint32_t>(rng()) & 0x807fffffu) | (exp << 23));
    }
    ASSERT_EQ(f32_to_f16(x), f16_reference(x)) << std::hexfloat << x;
    const float y = f32_bits(static_cast<uint32_t>(rng()));
    if (!std::isnan(y) && std::fabs(y) < 3.0e38f) ASSERT_EQ(f32_to_bf16(y), bf16_reference(y)) << std::hexfloat << y;
    ++checked;
  }
  EXPECT_EQ(checked, 1000000);
}

TEST(Safetensors, ConvertReportsTheFirstOverflow) {
  const std::vector<float> v = {1.0f, -65504.0f, 70000.0f, -1e9f, std::numeric_limits<float>::infinity()};
  std::vector<uint16_t> out(v.size());
  EXPECT_EQ(st_convert(StDType::F32, v.data(), StDType::F16, out.data(), 5), 2);
  EXPECT_EQ(out[1], 0xfbff);
  EXPECT_EQ(st_convert(StDType::F32, v.data(), StDType::BF16, out.data(), 5), -1);  // inf in, inf out: no overflow
  const std::vector<float> big = {std::numeric_limits<float>::max()};
  EXPECT_EQ(st_convert(StDType::F32, big.data(), StDType::BF16, out.data(), 1), 0);
}

// ---------------------------------------------------------------------------------------------------------
// writer and reader

TEST(Safetensors, WriterMatchesReferenceImplementationBytes) {
  const std::string dir = test::temp_dir("st_kat");
  const std::vector<float> data = {0, 1, 2, 3, 4, 5};
  auto bytes_of = [&](std::vector<StWriteTensor> t, std::map<std::string, std::string> meta) {
    write_safetensors(dir + "/f.safetensors", t, meta);
    const std::string b = read_bytes(dir + "/f.safetensors");
    EXPECT_EQ(b.size(), safetensors_file_size(t, meta));
    std::vector<int> out;
    for (char c : b) out.push_back(static_cast<unsigned char>(c));
    return out;
  };
  // safetensors/src/tensor.rs, test_serialization
  EXPECT_EQ(bytes_of({{"attn.0", {1, 2, 3}, StDType::F32, data.data(), StDType::F32}}, {}),
            (std::vector<int>{64,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34,
                              58,  123, 34,  100, 116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,
                              115, 104, 97,  112, 101, 34,  58,  91,  49,  44,  50,  44,  51,  93,  44,  34,  100,
                              97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115, 34,  58,  91,  48,  44,  50,
                              52,  93,  125, 125, 0,   0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,  0,
                              0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64}));
  // test_serialization_forced_alignement: a shorter name, so the header is padded with seven spaces
  const std::vector<int> aligned = bytes_of({{"attn0", {1, 1, 2, 3}, StDType::F32, data.data(), StDType::F32}}, {});
  EXPECT_EQ(aligned[0], 72);
  EXPECT_EQ(std::string(aligned.begin() + 8, aligned.begin() + 80),
            std::string("{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       "));
  // test_empty, without and with metadata
  EXPECT_EQ(bytes_of({}, {}), (std::vector<int>{8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32}));
  const std::vector<int> meta = bytes_of({}, {{"framework", "pt"}});
  EXPECT_EQ(meta[0], 40);
  EXPECT_EQ(std::string(meta.begin() + 8, meta.end()), "{\"__metadata__\":{\"framework\":\"pt\"}}     ");
}

TEST(Safetensors, RoundTripEveryDtypeInOneFile) {
  const std::string dir = test::temp_dir("st_roundtrip");
  const std::vector<float> f32 = {1.5f, -0.25f, 3.0e-8f, 65504.0f, -1e30f, 0.1f};
  std::vector<uint16_t> f16(6), bf16(6);
  for (size_t i = 0; i < 6; ++i) f16[i] = f32_to_f16(f32[i]), bf16[i] = f32_to_bf16(f32[i]);
  const std::vector<StWriteTensor> in = {
      {"z.half", {2, 3}, StDType::F16, f16.data(), StDType::F16},
      {"a.brain", {6}, StDType::BF16, bf16.data(), StDType::BF16},
      {"m.single", {3, 2}, StDType::F32, f32.data(), StDType::F32},
      {"n.narrowed", {6}, StDType::BF16, f32.data(), StDType::F32},  // converted on write
      {"empty", {0, 4}, StDType::F32, nullptr, StDType::F32},
  };
  const std::string path = dir + "/m.safetensors";
  write_safetensors(path, in, {{"format", "pt"}});
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const SafetensorsReader r(path);
  EXPECT_EQ(r.metadata().at("format"), "pt");
  ASSERT_EQ(r.tensors().size(), 5u);
  // The reference's order: F32 tensors first, then BF16, then F16; by name within a dtype.
  EXPECT_EQ(r.find("empty")->begin, 0u);
  EXPECT_EQ(r.find("m.single")->begin, 0u);
  EXPECT_EQ(r.find("a.brain")->begin, 24u);
  EXPECT_EQ(r.find("n.narrowed")->begin, 36u);
  EXPECT_EQ(r.find("z.half")->begin, 48u);
  EXPECT_EQ(r.find("z.half")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(r.find("missing"), nullptr);

  std::vector<uint16_t> raw16(6);
  r.read_raw(*r.find("z.half"), raw16.data());
  EXPECT_EQ(raw16, f16);
  r.read_raw(*r.find("a.brain"), raw16.data());
  EXPECT_EQ(raw16, bf16);
  r.read_raw(*r.find("n.narrowed"), raw16.data());
  EXPECT_EQ(raw16, bf16);
  std::vector<float> got(6);
  r.read_into(*r.find("m.single"), Tensor(got.data(), DType::f32, {3, 2}));
  EXPECT_EQ(got, f32);
  r.read_into(*r.find("a.brain"), Tensor(got.data(), DType::f32, {6}));
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(got[i], bf16_to_f32(bf16[i]));
  std::vector<double> got64(6);
  r.read_into(*r.find("z.half"), Tensor(got64.data(), DType::f64, {2, 3}));
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(got64[i], static_cast<double>(f16_to_f32(f16[i])));
  try {
    r.read_into(*r.find("m.single"), Tensor(got.data(), DType::f32, {6}));
    ADD_FAILURE() << "a shape mismatch was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": tensor 'm.single' has shape (3, 2), expected (6)"), std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, WriterRejectsOverflowAndBadNames) {
  const std::string dir = test::temp_dir("st_write_err");
  const std::vector<float> v = {1.0f, 2.0f, 3.0f, 70000.0f};
  const std::string path = dir + "/o.safetensors";
  try {
    write_safetensors(path, {{"w", {4}, StDType::F16, v.data(), StDType::F32}});
    ADD_FAILURE() << "an fp16 overflow was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": tensor 'w' element 3 = 70000"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("overflows F16 (largest finite 65504)"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_THROW(write_safetensors(path, {{"w", {1}, StDType::F32, v.data(), StDType::F32},
                                        {"w", {1}, StDType::F32, v.data(), StDType::F32}}),
               Error);
  EXPECT_THROW(write_safetensors(path, {{"__metadata__", {1}, StDType::F32, v.data(), StDType::F32}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"bad\xff", {1}, StDType::F32, v.data(), StDType::F32}}), Error);
}

// ---------------------------------------------------------------------------------------------------------
// hostile and broken headers

struct BadHeader {
  const char* label;
  std::string header;
  size_t data_bytes;
  uint64_t claimed;   // UINT64_MAX: the header's real length
  const char* want;   // substring of the error
};

TEST(Safetensors, RejectsBrokenAndHostileHeaders) {
  const std::string dir = test::temp_dir("st_bad");
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::vector<BadHeader> cases = {
      {"length beyond the file", "{}", 0, 1000, "header length field says 1000 bytes, but the file has only 2"},
      {"length over the cap", "{}", 0, uint64_t{1} << 63, "over the 100000000-byte limit"},
      {"not an object", "[1, 2]", 0, UINT64_MAX, "does not start with '{'"},
      {"leading garbage", "x{}", 0, UINT64_MAX, "does not start with '{'"},
      {"truncated JSON", R"({"a":{"dtype":"F32")", 0, UINT64_MAX, "not valid JSON"},
      {"trailing garbage", "{} x", 0, UINT64_MAX, "not valid JSON"},
      {"invalid UTF-8", "{\"\xff\xfe\":1}", 0, UINT64_MAX, "not valid JSON"},
      {"NUL in header", std::string("{}\0{", 4), 0, UINT64_MAX, "a NUL byte"},
      {"entry not an object", R"({"a":1})", 0, UINT64_MAX, "tensor 'a': its entry is not an object"},
      {"missing field", R"({"a":{"dtype":"F32","shape":[2]}})", 8, UINT64_MAX, "tensor 'a': no 'data_offsets' field"},
      {"unknown dtype", R"({"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}})", 8, UINT64_MAX,
       "tensor 'a': unknown dtype 'F99' (polyllama reads F32, F16 and BF16)"},
      {"unsupported dtype", R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8, UINT64_MAX,
       "tensor 'a': dtype I64 is not supported"},
      {"dtype not a string", R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4, UINT64_MAX,
       "tensor 'a': dtype is not a string"},
      {"negative dim", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, UINT64_MAX,
       "tensor 'a': shape [-2] holds -2, not a non-negative integer"},
      {"fractional dim", R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8, UINT64_MAX,
       "not a non-negative integer"},
      {"huge dim as float", R"({"a":{"dtype":"F32","shape":[1e30],"data_offsets":[0,8]}})", 8, UINT64_MAX,
       "not a non-negative integer"},
      {"dim beyond int64", R"({"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})", 8,
       UINT64_MAX, "tensor 'a': dimension 18446744073709551615 is too large"},
      {"shape product overflows", R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8,
       UINT64_MAX, "tensor 'a': the size of shape [4294967296,4294967296] overflows 64 bits"},
      {"byte size overflows", R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8,
       UINT64_MAX, "overflows 64 bits"},
      {"shape does not fill the span", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 12,
       UINT64_MAX, "tensor 'a': shape (2, 2) of F32 needs 16 bytes, but data_offsets [0,12] span 12"},
      {"offsets beyond the data", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8, UINT64_MAX,
       "tensor 'a': data_offsets [0,16] reach past the data area, which holds 8 bytes"},
      {"offsets backwards", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, UINT64_MAX,
       "tensor 'a': data_offsets [8,0] run backwards"},
      {"offsets not a pair", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, UINT64_MAX,
       "tensor 'a': data_offsets [0] is not a pair of non-negative integers"},
      {"negative offset", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8, UINT64_MAX,
       "is not a pair of non-negative integers"},
      {"overlapping tensors",
       R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
       24, UINT64_MAX, "tensor 'b': bytes [8, 24) overlap tensor 'a' at [0, 16)"},
      {"same span twice",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       8, UINT64_MAX, "overlap tensor 'a'"},
      {"gap between tensors",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
       24, UINT64_MAX, "tensor 'b': starts at byte 16 of the data area, leaving 8 unused bytes before it"},
      {"trailing bytes", "{" + ok_entry + "}", 16, UINT64_MAX,
       "the tensors end at byte 8 of the data area, but it holds 16 bytes"},
      {"duplicate tensor name", "{" + ok_entry + "," + ok_entry + "}", 8, UINT64_MAX, "the header repeats the key 'a'"},
      {"duplicate field", R"({"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8, UINT64_MAX,
       "the header repeats the key 'dtype'"},
      {"metadata not an object", R"({"__metadata__":[1]})", 0, UINT64_MAX, "__metadata__ is not an object of strings"},
      {"metadata value not a string", R"({"__metadata__":{"format":1}})", 0, UINT64_MAX,
       "__metadata__ value for 'format' is not a string"},
      {"control characters in a name are escaped", "{\"a\\u0001b\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}",
       0, UINT64_MAX, "tensor 'a\\x01b': unknown dtype 'X'"},
  };
  int i = 0;
  for (const BadHeader& c : cases) {
    const std::string path = make_file(dir, "case" + std::to_string(i++) + ".safetensors", c.header, c.data_bytes,
                                       c.claimed);
    const std::string msg = open_error(path);
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << c.label << ": the message does not start with the file: " << msg;
    EXPECT_NE(msg.find(c.want), std::string::npos) << c.label << ": got '" << msg << "'";
  }
  // Too short for a length field.
  write_bytes(dir + "/short.safetensors", "abc");
  EXPECT_NE(open_error(dir + "/short.safetensors").find("3 bytes is too short"), std::string::npos);
  // A missing file.
  EXPECT_NE(open_error(dir + "/nope.safetensors").find("cannot open " + dir + "/nope.safetensors"), std::string::npos);
  // A very long name is cut in the message.
  const std::string long_name(5000, 'n');
  const std::string path = make_file(dir, "long.safetensors", "{\"" + long_name + "\":{\"dtype\":\"I8\"}}", 0);
  const std::string msg = open_error(path);
  EXPECT_NE(msg.find("..."), std::string::npos);
  EXPECT_LT(msg.size(), 600u) << msg;
  // Scalars, empty tensors and header padding are fine.
  const std::string good =
      make_file(dir, "good.safetensors",
                R"({"s":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[2,2]}}   )",
                2);
  EXPECT_EQ(open_error(good), "");
}

TEST(Safetensors, ParseHeaderDirectly) {
  std::map<std::string, std::string> meta;
  const auto t = parse_safetensors_header(
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[3],"data_offsets":[4,10]},)"
      R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
      10, "mem", &meta);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "a");  // sorted by name
  EXPECT_EQ(t[1].dtype, StDType::F16);
  EXPECT_EQ(t[1].numel(), 3);
  EXPECT_EQ(meta.at("format"), "pt");
}
