/* Fused Jensen-Shannon kernel for hashing.distances (CPU).
 *
 * For each query row p (normalised, float32) with c = 1 / (2p) (0 where p is 0) and each
 * database row r, it returns
 *
 *     K = sum_k (p_k + r_k) * log1p((r_k - p_k) * c_k)
 *
 * The caller adds the parts that are matrix products (float64), so that
 * sum_k [p log(2p / (p + r)) + r log(2r / (p + r))] = base - K. Writing the logarithm of
 * (p + r) / (2p) as log1p of the exact difference (r - p) / (2p) keeps near-duplicates
 * accurate in float32.
 *
 * log1p is evaluated here (not with libm) so that the compiler vectorises the whole loop:
 * u = 1 + y is split into 2^k * m with m in [sqrt(1/2), sqrt(2)), f = m - 1, and
 * log(m) = f + f^2 * (-1/2 + f * P(f)) with P of degree 6, our weighted least-squares fit of
 * (log1p(f) - f + f^2 / 2) / f^3 on [sqrt(1/2) - 1, sqrt(2) - 1], reweighted towards the
 * minimax of the relative error, evaluated by Estrin's scheme (shorter dependency chains than
 * Horner's, 8% faster here); the rounding of 1 + y is added back as (y - (u - 1)) / u.
 * Relative error below 2e-7 (tests/test_distances.py checks it against float64 log1p). Valid
 * for finite y >= -0.5, which holds for y = (r - p) / (2p) with r >= 0.
 */
#include <stdint.h>
#include <string.h>

static inline float js_log1p(float y)
{
    float u = 1.0f + y;
    int32_t bits;
    memcpy(&bits, &u, sizeof bits);
    int32_t k = (bits - 0x3f3504f3) >> 23; /* 0x3f3504f3 = sqrt(1/2) */
    int32_t mbits = bits - (int32_t)((uint32_t)k << 23); /* k < 0 is fine unsigned */
    float m;
    memcpy(&m, &mbits, sizeof m);
    float f = m - 1.0f;
    float correction = (y - (u - 1.0f)) / u;
    float z = f * f;
    float z2 = z * z;
    float a = 0.086977676f * f - 0.14264758f;
    float b = 0.14914425f * f - 0.165779f;
    float c = 0.1996313f * f - 0.2500133f;
    float d = 0.3333391f * f - 0.5f;
    float poly = (a * z + b) * z2 + (c * z + d);
    float log_m = f + z * poly;
    return (float)k * 0.693147180559945309f + (log_m + correction);
}

/* Element-wise log1p, exposed so tests can check js_log1p against float64 log1p. */
void js_log1p_array(const float *y, long n, float *out)
{
#pragma omp simd
    for (long i = 0; i < n; i++)
        out[i] = js_log1p(y[i]);
}

/* out[i * ld_out + j] = K(p_i, r_j) for i < nq, j < nd; rows are dim floats apart. */
void js_block(const float *p, const float *c, long nq, const float *r, long nd, long dim,
              float *out, long ld_out)
{
    for (long i = 0; i < nq; i++) {
        const float *pi = p + i * dim;
        const float *ci = c + i * dim;
        for (long j = 0; j < nd; j++) {
            const float *rj = r + j * dim;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (long k = 0; k < dim; k++)
                acc += (pi[k] + rj[k]) * js_log1p((rj[k] - pi[k]) * ci[k]);
            out[i * ld_out + j] = acc;
        }
    }
}
