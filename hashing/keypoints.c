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
