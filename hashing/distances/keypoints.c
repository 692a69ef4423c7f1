/* Keypoint matching kernel for hashing.keypoints (CPU): 256-bit binary descriptors (ORB,
 * LATCH; shorter ones zero-padded to 256 bits).
 *
 * For each query descriptor r (q: 4 words a row; rows with qskip[r] set are padding and
 * skipped) and each database image j (its counts[j] descriptors at d + j * kd * 4), the
 * fewest differing bits over the image's descriptors, min-reduced into
 * out[(r / group) * ldo + j], which the caller fills with a large value first. group = 1
 * keeps one row per query descriptor (any cutoff); group = the padded descriptor count of a
 * query image gives the study's distance for cutoff 1 at once. What OpenCV's BFMatcher does
 * for one pair of images, for every pair, without a (query descriptors x database
 * descriptors) matrix in memory.
 *
 * xor and popcount are the whole cost; the descriptor loop is unrolled by the compiler (1.3x
 * faster than without on the machine of scripts/benchmark_hashing.py: the loop's own
 * instructions were as many as the work's). Tried there and no faster: an AVX2 popcount
 * (nibble lookup with vpshufb), alone or beside the scalar one; two query rows per pass;
 * four running minima.
 *
 * Where the compiler targets AVX-512 with VPOPCNTDQ (-march=native on Ice Lake and later),
 * local_hamming_min_t does the same on a transposed database: blocks of 8 descriptors
 * stored word by word ((N, blocks, 4, 8) words), so one 512-bit xor and popcount give one
 * word of 8 descriptor pairs, four of them add up to 8 distances, and a masked minimum
 * leaves out the padding slots of an image's last block.
 */
#pragma GCC optimize("unroll-loops")
#include <stdint.h>

#define PC __builtin_popcountll

static inline int32_t ham(uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                          const uint64_t *x)
{
    return (int32_t)(PC(a0 ^ x[0]) + PC(a1 ^ x[1]) + PC(a2 ^ x[2]) + PC(a3 ^ x[3]));
}

void local_hamming_min(const uint64_t *q, const uint8_t *qskip, long nrows, long group,
                       const uint64_t *d, const int64_t *counts, long nimages, long kd,
                       int32_t *out, long ldo)
{
    for (long r = 0; r < nrows; r++) {
        if (qskip[r])
            continue;
        const uint64_t a0 = q[4 * r], a1 = q[4 * r + 1], a2 = q[4 * r + 2], a3 = q[4 * r + 3];
        int32_t *row = out + (r / group) * ldo;
        for (long j = 0; j < nimages; j++) {
            const uint64_t *x = d + j * kd * 4;
            const long c = counts[j];
            int32_t best = row[j];
            for (long t = 0; t < c; t++, x += 4) {
                const int32_t s = ham(a0, a1, a2, a3, x);
                best = s < best ? s : best;
            }
            row[j] = best;
        }
    }
}

/* 1 when local_hamming_min_t is compiled with AVX-512 VPOPCNTDQ, else 0 (then it must not be
 * called). */
int local_hamming_simd(void)
{
#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
    return 1;
#else
    return 0;
#endif
}

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
#include <immintrin.h>

/* As local_hamming_min, with dt the database transposed: image j's block b (descriptors
 * 8b .. 8b + 7) at dt + (j * nblocks + b) * 32, word w of its 8 descriptors at + 8 w. Slots
 * at or beyond counts[j] may hold anything: they are masked out. */
void local_hamming_min_t(const uint64_t *q, const uint8_t *qskip, long nrows, long group,
                         const uint64_t *dt, const int64_t *counts, long nimages,
                         long nblocks, int32_t *out, long ldo)
{
    for (long r = 0; r < nrows; r++) {
        if (qskip[r])
            continue;
        const __m512i a0 = _mm512_set1_epi64((long long)q[4 * r]);
        const __m512i a1 = _mm512_set1_epi64((long long)q[4 * r + 1]);
        const __m512i a2 = _mm512_set1_epi64((long long)q[4 * r + 2]);
        const __m512i a3 = _mm512_set1_epi64((long long)q[4 * r + 3]);
        int32_t *row = out + (r / group) * ldo;
        for (long j = 0; j < nimages; j++) {
            const long c = counts[j];
            if (c <= 0)
                continue;
            const uint64_t *x = dt + j * nblocks * 32;
            __m512i best = _mm512_set1_epi64(1 << 20);
            for (long left = c; left > 0; left -= 8, x += 32) {
                __m512i s = _mm512_popcnt_epi64(_mm512_xor_si512(a0, _mm512_loadu_si512(x)));
                s = _mm512_add_epi64(s, _mm512_popcnt_epi64(
                        _mm512_xor_si512(a1, _mm512_loadu_si512(x + 8))));
                s = _mm512_add_epi64(s, _mm512_popcnt_epi64(
                        _mm512_xor_si512(a2, _mm512_loadu_si512(x + 16))));
                s = _mm512_add_epi64(s, _mm512_popcnt_epi64(
                        _mm512_xor_si512(a3, _mm512_loadu_si512(x + 24))));
                const __mmask8 valid = left >= 8 ? (__mmask8)0xFF
                                                 : (__mmask8)((1u << left) - 1u);
                best = _mm512_mask_min_epi64(best, valid, best, s);
            }
            const int32_t b = (int32_t)_mm512_reduce_min_epi64(best);
            row[j] = b < row[j] ? b : row[j];
        }
    }
}
#endif
