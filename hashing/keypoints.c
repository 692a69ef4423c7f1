/* Keypoint matching kernel for hashing.keypoints (CPU): binary descriptors.
 *
 * For each query descriptor i (q: nq rows of `words` 64-bit words) and each database image j
 * (its counts[j] descriptors at d + j * kd * words, rows of `words` words), the smallest
 * Hamming distance, in differing bits: out[i * ldo + j]. An image without descriptors gets
 * INT32_MAX, which the caller turns into an infinite distance.
 *
 * What OpenCV's BFMatcher does for one pair of images, here for every pair at once without a
 * (query descriptors x database descriptors) matrix in memory: the minimum over an image's
 * descriptors is taken as they are compared. The 256-bit descriptors of ORB and LATCH
 * (words == 4) get an unrolled loop; xor and popcount are the whole cost.
 */
#include <stdint.h>

static inline int32_t ham4(const uint64_t *a, const uint64_t *b)
{
    return __builtin_popcountll(a[0] ^ b[0]) + __builtin_popcountll(a[1] ^ b[1])
         + __builtin_popcountll(a[2] ^ b[2]) + __builtin_popcountll(a[3] ^ b[3]);
}

void local_hamming_min(const uint64_t *q, long nq, const uint64_t *d, long nimages, long kd,
                       const int64_t *counts, long words, int32_t *out, long ldo)
{
    for (long i = 0; i < nq; i++) {
        const uint64_t *qi = q + i * words;
        int32_t *row = out + i * ldo;
        for (long j = 0; j < nimages; j++) {
            const uint64_t *dj = d + j * kd * words;
            const long c = counts[j];
            int32_t best = INT32_MAX;
            if (words == 4) {
                for (long t = 0; t < c; t++) {
                    const int32_t s = ham4(qi, dj + 4 * t);
                    best = s < best ? s : best;
                }
            } else {
                for (long t = 0; t < c; t++) {
                    int32_t s = 0;
                    for (long w = 0; w < words; w++)
                        s += __builtin_popcountll(qi[w] ^ dj[t * words + w]);
                    best = s < best ? s : best;
                }
            }
            row[j] = best;
        }
    }
}
