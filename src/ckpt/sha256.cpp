// SHA-256 per FIPS 180-4 section 6.2, with the x86 SHA extensions (sha256rnds2/msg1/msg2) where the CPU has them:
// the portable rounds hash about 0.3 GB/s per core, which would make verifying a 7B checkpoint take minutes.
#include "polyllama/ckpt/sha256.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "polyllama/core/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define PL_SHA_X86 1
#endif

namespace polyllama {

namespace {

constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void blocks_portable(uint32_t h[8], const unsigned char* p, size_t nblocks) {
  for (; nblocks > 0; --nblocks, p += 64) {
    uint32_t w[64];
    for (int t = 0; t < 16; ++t)
      w[t] = uint32_t{p[4 * t]} << 24 | uint32_t{p[4 * t + 1]} << 16 | uint32_t{p[4 * t + 2]} << 8 | p[4 * t + 3];
    for (int t = 16; t < 64; ++t) {
      const uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; ++t) {
      const uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kK[t] + w[t];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
  }
}

#ifdef PL_SHA_X86
// Intel's SHA-extension scheme: the state as ABEF/CDGH, two rounds per sha256rnds2, the schedule four words at a
// time (msg1 starts words 4g+12.., msg2 finishes words 4g+4..).
__attribute__((target("sha,sse4.1,ssse3"))) void blocks_x86(uint32_t h[8], const unsigned char* p, size_t nblocks) {
  const __m128i kShuffle = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);  // big-endian words
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)), 0xB1);  // CDAB
  __m128i st1 = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 4)), 0x1B);  // EFGH
  __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);       // ABEF
  st1 = _mm_blend_epi16(st1, tmp, 0xF0);             // CDGH
  for (; nblocks > 0; --nblocks, p += 64) {
    const __m128i abef = st0, cdgh = st1;
    __m128i m[4];
    for (int i = 0; i < 4; ++i)
      m[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i)), kShuffle);
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
      __m128i msg = _mm_add_epi32(m[g & 3], _mm_loadu_si128(reinterpret_cast<const __m128i*>(kK + 4 * g)));
      st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
      if (g >= 3 && g <= 14) {  // finish the next group's words
        const __m128i t = _mm_alignr_epi8(m[g & 3], m[(g + 3) & 3], 4);
        m[(g + 1) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(m[(g + 1) & 3], t), m[g & 3]);
      }
      msg = _mm_shuffle_epi32(msg, 0x0E);
      st0 = _mm_sha256rnds2_epu32(st0, st1, msg);
      if (g >= 1 && g <= 12) m[(g + 3) & 3] = _mm_sha256msg1_epu32(m[(g + 3) & 3], m[g & 3]);  // start group g+3
    }
    st0 = _mm_add_epi32(st0, abef);
    st1 = _mm_add_epi32(st1, cdgh);
  }
  tmp = _mm_shuffle_epi32(st0, 0x1B);               // FEBA
  st1 = _mm_shuffle_epi32(st1, 0xB1);               // DCHG
  st0 = _mm_blend_epi16(tmp, st1, 0xF0);            // DCBA
  st1 = _mm_alignr_epi8(st1, tmp, 8);               // HGFE
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h), st0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h + 4), st1);
}

bool cpu_has_sha() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return ssse3 && sse41 && (b & (1u << 29));
}
const bool g_cpu_has_sha = cpu_has_sha();
bool g_sha_x86 = g_cpu_has_sha;
#endif

void blocks(uint32_t h[8], const unsigned char* p, size_t nblocks) {
#ifdef PL_SHA_X86
  if (g_sha_x86) return blocks_x86(h, p, nblocks);
#endif
  blocks_portable(h, p, nblocks);
}

}  // namespace

bool sha256_use_cpu_instructions(bool use) {
#ifdef PL_SHA_X86
  g_sha_x86 = use && g_cpu_has_sha;
  return g_sha_x86;
#else
  (void)use;
  return false;
#endif
}

bool sha256_uses_cpu_instructions() {
#ifdef PL_SHA_X86
  return g_sha_x86;
#else
  return false;
#endif
}

Sha256::Sha256()
    : h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19} {}

void Sha256::update(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += n;
  if (buf_len_ > 0) {
    const size_t take = std::min(n, size_t{64} - buf_len_);
    std::memcpy(buf_ + buf_len_, p, take);
    buf_len_ += take, p += take, n -= take;
    if (buf_len_ < 64) return;
    blocks(h_, buf_, 1);
    buf_len_ = 0;
  }
  blocks(h_, p, n / 64);
  p += n / 64 * 64;
  buf_len_ = n % 64;
  std::memcpy(buf_, p, buf_len_);
}

std::string Sha256::hex_digest() {
  const uint64_t bits = total_ * 8;
  unsigned char pad[72] = {0x80};
  const size_t pad_len = (buf_len_ < 56 ? 56 : 120) - buf_len_;  // to 56 mod 64, then the 8-byte length
  for (int i = 0; i < 8; ++i) pad[pad_len + static_cast<size_t>(i)] = static_cast<unsigned char>(bits >> (56 - 8 * i));
  update(pad, pad_len + 8);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (uint32_t w : h_)
    for (int s = 28; s >= 0; s -= 4) out += kHex[(w >> s) & 0xF];
  return out;
}

std::string sha256_file(const std::string& path, uint64_t* bytes) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) fail_input("cannot open " + path + " to check its SHA-256: " + std::strerror(errno));
  constexpr size_t kBlock = size_t{8} << 20;  // large reads: the hash, not the system calls, sets the speed
  std::unique_ptr<unsigned char[]> buf(new unsigned char[kBlock]);
  Sha256 h;
  uint64_t total = 0;
  for (;;) {
    const size_t n = std::fread(buf.get(), 1, kBlock, f.get());
    h.update(buf.get(), n);
    total += n;
    if (n < kBlock) break;
  }
  if (std::ferror(f.get())) fail_input("cannot read " + path + " to check its SHA-256: " + std::strerror(errno));
  if (bytes) *bytes = total;
  return h.hex_digest();
}

}  // namespace polyllama
