// Image rows as bitmasks (bit x of word x/64): binarising a row is a vector compare, and runs and set
// pixels are found with count-trailing-zeros and word operations instead of a byte-by-byte scan.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define UNETSDK_SSE2 1
#endif
#if defined(_MSC_VER)
#include <intrin.h>
#endif

#include "views.hpp"

namespace unetsdk {

inline index_t words_per_row(index_t nx) { return (nx + 63) / 64; }

inline int count_trailing_zeros(std::uint64_t v) {  // v != 0
#if defined(_MSC_VER)
    unsigned long i;
    _BitScanForward64(&i, v);
    return static_cast<int>(i);
#else
    return __builtin_ctzll(v);
#endif
}

// Hint that *p will be read soon (no effect where the compiler has no such builtin).
inline void prefetch(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p);
#elif defined(UNETSDK_SSE2)
    _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
#endif
}

// Set bits of v. Without a popcnt target (the default x86-64 build) the compiler's builtin is a library
// call; the in-register bit count (Hacker's Delight 5-2) is a dozen instructions and no branch.
inline int popcount(std::uint64_t v) {
#if defined(__POPCNT__)
    return __builtin_popcountll(v);
#else
    v -= (v >> 1) & 0x5555555555555555ull;
    v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
    v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return static_cast<int>((v * 0x0101010101010101ull) >> 56);
#endif
}

// words[] = bits of (src[x] > k) for x < nx; bits past nx are 0.
inline void pack_greater(const std::uint8_t* src, index_t nx, std::uint8_t k, std::uint64_t* words) {
    const index_t n_words = words_per_row(nx);
    index_t x = 0;
    for (index_t i = 0; i < n_words; ++i) {
        std::uint64_t w = 0;
#ifdef UNETSDK_SSE2
        if (x + 64 <= nx) {
            const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));  // unsigned compare via signed
            const __m128i kk = _mm_xor_si128(_mm_set1_epi8(static_cast<char>(k)), flip);
            for (int part = 0; part < 4; ++part) {
                const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + x + 16 * part));
                const int m = _mm_movemask_epi8(_mm_cmpgt_epi8(_mm_xor_si128(v, flip), kk));
                w |= static_cast<std::uint64_t>(static_cast<std::uint16_t>(m)) << (16 * part);
            }
            words[i] = w;
            x += 64;
            continue;
        }
#endif
        for (int b = 0; b < 64 && x < nx; ++b, ++x) w |= static_cast<std::uint64_t>(src[x] > k) << b;
        words[i] = w;
    }
}

// In-place transpose of a 64 x 64 bit block: afterwards bit r of a[c] is what bit c of a[r] was
// (Hacker's Delight 7-3, recursive block swaps).
inline void transpose64(std::uint64_t* a) {
    std::uint64_t m = 0x00000000FFFFFFFFull;
    for (int j = 32; j; j >>= 1, m ^= m << j)
        for (int k = 0; k < 64; k = ((k | j) + 1) & ~j) {
            const std::uint64_t t = ((a[k] >> j) ^ a[k | j]) & m;
            a[k] ^= t << j;
            a[k | j] ^= t;
        }
}

// Transposes a bit matrix: rows (ny rows of words_per_row(nx) words, bit x of row y) into columns
// (nx rows of words_per_row(ny) words, bit y of column x).
inline void transpose_bits(const std::uint64_t* rows, index_t ny, index_t nx, std::uint64_t* columns) {
    const index_t row_words = words_per_row(nx), column_words = words_per_row(ny);
    std::uint64_t block[64];
    for (index_t by = 0; by < column_words; ++by)
        for (index_t bx = 0; bx < row_words; ++bx) {
            for (index_t r = 0; r < 64; ++r) block[r] = by * 64 + r < ny ? rows[(by * 64 + r) * row_words + bx] : 0;
            transpose64(block);
            for (index_t c = 0; c < 64 && bx * 64 + c < nx; ++c) columns[(bx * 64 + c) * column_words + by] = block[c];
        }
}

// fn(x) for every set bit.
template <class Fn>
void for_each_set_bit(const std::uint64_t* words, index_t nx, Fn&& fn) {
    const index_t n_words = words_per_row(nx);
    for (index_t i = 0; i < n_words; ++i)
        for (std::uint64_t w = words[i]; w; w &= w - 1) fn(i * 64 + count_trailing_zeros(w));
}

}  // namespace unetsdk
