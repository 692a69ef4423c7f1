/* Distances of listed row pairs (the edges of a neighbour graph) in float64, for
 * clustering.graph.exact_edge_distances (CPU).
 *
 * Faiss finds a graph's edges through matrix products, whose rounding gives an exact
 * duplicate a distance of about 1e-7; the graph stores each edge's distance recomputed from
 * the two rows instead. In NumPy that means gathering both rows of every edge, converting
 * them to float64 and making four passes over them (8 us an edge at 512 dimensions); here it
 * is one pass over the two rows, in place, vectorised by the compiler (the reduction is
 * declared with omp simd, so -fopenmp-simd lets it reassociate the float64 sum).
 *
 * x: (n, dim) float32 rows; rows[e], cols[e]: the ends of edge e; out[e]: its distance.
 * metric 0: l2, sqrt(sum (a - b)^2); 1: l1, sum |a - b|; 2: cosine as hashing.distances,
 * (1 - cos) / 2 = |a / |a| - b / |b||^2 / 4, with scale[i] = 1 / |x_i| (float64), which is
 * exactly 0 for a duplicate and stable for near ones. Contracting a * sa - b * sb into a fused
 * multiply-add would round one product and not the other, giving duplicates about 1e-33:
 * contraction is off.
 */
#ifdef __clang__
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif
#include <math.h>
#include <stdint.h>

void pair_distances(const float *x, long dim, const int64_t *rows, const int64_t *cols,
                    long m, int metric, const double *scale, float *out)
{
    for (long e = 0; e < m; e++) {
        const float *a = x + rows[e] * dim;
        const float *b = x + cols[e] * dim;
        double s = 0.0;
        if (metric == 0) {
#pragma omp simd reduction(+ : s)
            for (long k = 0; k < dim; k++) {
                double u = (double)a[k] - (double)b[k];
                s += u * u;
            }
            out[e] = (float)sqrt(s);
        } else if (metric == 1) {
#pragma omp simd reduction(+ : s)
            for (long k = 0; k < dim; k++)
                s += fabs((double)a[k] - (double)b[k]);
            out[e] = (float)s;
        } else {
            double sa = scale[rows[e]], sb = scale[cols[e]];
#pragma omp simd reduction(+ : s)
            for (long k = 0; k < dim; k++) {
                double u = (double)a[k] * sa - (double)b[k] * sb;
                s += u * u;
            }
            out[e] = (float)(s / 4.0);
        }
    }
}
