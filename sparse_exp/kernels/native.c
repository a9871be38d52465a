/* Compiled CPU kernels of a masked layer's products, of SGD at its kept entries, and of the interspace
   composition W = beta F (kernels/native.py loads them; kernels/csr.py, kernels/update.py and
   layers/interspace.py call them).

   PyTorch's CSR products take a handful of operations each (gather the values, build the CSR tensor,
   the product, the bias, the transposes, a COO gradient), at several microseconds of dispatch each: for
   LeNet-300-100 at 1% the step's small operations cost more than its arithmetic. Each function here does
   one product, or one layer's SGD step, in one call on raw memory.

   A weight W (rows, cols) keeps the entries k = crow[r] .. crow[r+1]-1 of row r, in column col[k], with
   the value w[index[k]] of the dense parameter (row-major positions: kernels/csr.py). The column-layout
   kernels (csr_mm, sampled) take dense operands with `n` columns: the im2col columns (cols, n) and
   dL/dY (rows, n) of a convolution, n = batch x output positions; the row-major ones (rows_*) take a
   linear layer's x (n, cols) and dL/dY (n, rows) as PyTorch holds them. Every function exists for float
   (f32) and double (f64). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
/* one build, two code paths: x86-64-v3 (AVX2, FMA) where the CPU has it, chosen at load time by its
   features (not "arch=haswell", whose resolver asks for that CPU model and picks SSE2 on an AMD EPYC: the
   row-major forward of LeNet-300-100's fc1 then took 242 instead of 35 us), SSE2 elsewhere */
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

/* helpers are inlined into each clone, so that they are compiled for its instruction set too */
#define INLINE static inline __attribute__((always_inline))
#define CHUNK 512 /* columns of the output kept in L1 while a row's kept entries are added into it */
/* The rows b[col[k]] of successive kept entries lie anywhere in b (x^T is 313 KB for LeNet-300-100's fc1 at
   batch 100): each waits for memory unless fetched ahead. Prefetching the row of the entry AHEAD places on
   took fc1's product from 70 to 30 us (one thread, measured in C). */
#define AHEAD 4
INLINE void prefetch_row(const void *row, int64_t bytes) {
    for (int64_t q = 0; q < bytes; q += 64) __builtin_prefetch((const char *)row + q);
}

/* The row-major kernels (rows_*) work on LANES samples at once: their rows of x (or dL/dY) are copied into
   an L1-sized block of vectors, lane l holding sample n0 + l, so that each kept entry costs one vector
   multiply-add and no transposed copy of x is ever written (for fc1 of LeNet-300-100 that copy, 313 KB of
   fresh memory a step, cost more than the product). */
#define LANES 8
typedef float vec_f32 __attribute__((vector_size(LANES * sizeof(float))));
typedef double vec_f64 __attribute__((vector_size(LANES * sizeof(double))));

static void *vectors(int64_t count, int64_t size) { /* zeroed, 64-byte aligned; NULL if out of memory */
    void *p = NULL;
    const size_t bytes = (size_t)(count > 0 ? count : 1) * (size_t)size;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}

/* The 8 x 8 transpose of eight float vectors (the unpack / shuffle / lane-swap steps of AVX, written with
   GCC's generic shuffles so that the SSE build gets them too), to load and store the blocks of the
   row-major kernels by 8 x 8 tiles. Measured in C, one thread, LeNet-300-100's fc1 forward (1,874 kept
   entries, batch 100): element by element the copies took 71 of the kernel's 125 us (SSE2 build); by
   tiles (AVX2 build) the whole kernel takes 35 us, the copies 22. */
typedef int32_t mask_f32 __attribute__((vector_size(LANES * sizeof(int32_t))));
INLINE void transpose8_f32(vec_f32 *restrict v) {
    const mask_f32 lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
    const mask_f32 s_lo = {0, 1, 8, 9, 4, 5, 12, 13}, s_hi = {2, 3, 10, 11, 6, 7, 14, 15};
    const mask_f32 p_lo = {0, 1, 2, 3, 8, 9, 10, 11}, p_hi = {4, 5, 6, 7, 12, 13, 14, 15};
    vec_f32 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = __builtin_shuffle(v[2 * i], v[2 * i + 1], lo);
        t[2 * i + 1] = __builtin_shuffle(v[2 * i], v[2 * i + 1], hi);
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            u[4 * i + 2 * j] = __builtin_shuffle(t[4 * i + j], t[4 * i + j + 2], s_lo);
            u[4 * i + 2 * j + 1] = __builtin_shuffle(t[4 * i + j], t[4 * i + j + 2], s_hi);
        }
    for (int i = 0; i < 4; i++) {
        v[i] = __builtin_shuffle(u[i], u[i + 4], p_lo);
        v[i + 4] = __builtin_shuffle(u[i], u[i + 4], p_hi);
    }
}

typedef float uvec_f32 __attribute__((vector_size(LANES * sizeof(float)), aligned(4))); /* unaligned access */

/* buf[i] lane l = src[l, i] for the m <= LANES rows of a row-major (m, width) block (lanes >= m are 0). */
INLINE void load_block_f32(const float *restrict src, int64_t width, int64_t m, vec_f32 *restrict buf) {
    int64_t i0 = 0;
    if (m == LANES)
        for (; i0 + LANES <= width; i0 += LANES) {
            vec_f32 v[LANES];
            for (int l = 0; l < LANES; l++) v[l] = *(const uvec_f32 *)(src + l * width + i0);
            transpose8_f32(v);
            for (int j = 0; j < LANES; j++) buf[i0 + j] = v[j];
        }
    float *restrict flat = (float *)buf;
    if (m < LANES) memset(buf + i0, 0, (size_t)(width - i0) * sizeof(vec_f32));
    for (int64_t l = 0; l < m; l++)
        for (int64_t i = i0; i < width; i++) flat[i * LANES + l] = src[l * width + i];
}

/* dst[l, i] = buf[i] lane l for l < m: the inverse of load_block. */
INLINE void store_block_f32(const vec_f32 *restrict buf, int64_t width, int64_t m, float *restrict dst) {
    int64_t i0 = 0;
    if (m == LANES)
        for (; i0 + LANES <= width; i0 += LANES) {
            vec_f32 v[LANES];
            for (int j = 0; j < LANES; j++) v[j] = buf[i0 + j];
            transpose8_f32(v);
            for (int l = 0; l < LANES; l++) *(uvec_f32 *)(dst + l * width + i0) = v[l];
        }
    const float *restrict flat = (const float *)buf;
    for (int64_t l = 0; l < m; l++)
        for (int64_t i = i0; i < width; i++) dst[l * width + i] = flat[i * LANES + l];
}

INLINE void load_block_f64(const double *restrict src, int64_t width, int64_t m, vec_f64 *restrict buf) {
    double *restrict flat = (double *)buf;
    if (m < LANES) memset(buf, 0, (size_t)width * sizeof(vec_f64));
    for (int64_t l = 0; l < m; l++)
        for (int64_t i = 0; i < width; i++) flat[i * LANES + l] = src[l * width + i];
}

INLINE void store_block_f64(const vec_f64 *restrict buf, int64_t width, int64_t m, double *restrict dst) {
    const double *restrict flat = (const double *)buf;
    for (int64_t l = 0; l < m; l++)
        for (int64_t i = 0; i < width; i++) dst[l * width + i] = flat[i * LANES + l];
}

#define KERNELS(T, S)                                                                                      \
/* out (rows, n) = bias[r] + sum_k w[index[k]] b[col[k], :] over the kept entries k of row r:            \
   Y^T = W X^T (forward) and, with the transposed structure, dL/dX^T = W^T dL/dY^T (grad_input). */      \
CLONES void csr_mm_##S(int64_t rows, int64_t n, const int64_t *restrict crow, const int64_t *restrict col, \
                       const int64_t *restrict index, const T *restrict w, const T *restrict b,           \
                       const T *restrict bias, T *restrict out) {                                         \
    for (int64_t r = 0; r < rows; r++) {                                                                   \
        for (int64_t j0 = 0; j0 < n; j0 += CHUNK) {                                                        \
            const int64_t m = n - j0 < CHUNK ? n - j0 : CHUNK;                                             \
            T *restrict o = out + r * n + j0;                                                              \
            const T b0 = bias ? bias[r] : (T)0;                                                            \
            for (int64_t j = 0; j < m; j++) o[j] = b0;                                                     \
            for (int64_t k = crow[r]; k < crow[r + 1]; k++) {                                              \
                if (k + AHEAD < crow[rows]) {                                                              \
                    prefetch_row(b + col[k + AHEAD] * n + j0, m * (int64_t)sizeof(T));                     \
                    __builtin_prefetch(w + index[k + AHEAD]);                                              \
                }                                                                                          \
                const T v = w[index[k]];                                                                   \
                const T *restrict bk = b + col[k] * n + j0;                                                \
                for (int64_t j = 0; j < m; j++) o[j] += v * bk[j];                                         \
            }                                                                                              \
        }                                                                                                  \
    }                                                                                                      \
}                                                                                                          \
                                                                                                           \
/* vals[k] = <a[r, :], b[col[k], :]> for the kept entries k of row r: dL/dW = dL/dY^T X at the kept      \
   entries only (a = dL/dY^T (rows, n), b = X^T (cols, n)), in the order of `index`. */                   \
CLONES void sampled_##S(int64_t rows, int64_t n, const int64_t *restrict crow, const int64_t *restrict col, \
                        const T *restrict a, const T *restrict b, T *restrict vals) {                     \
    for (int64_t r = 0; r < rows; r++) {                                                                   \
        const T *restrict ar = a + r * n;                                                                  \
        for (int64_t k = crow[r]; k < crow[r + 1]; k++) {                                                  \
            if (k + AHEAD < crow[rows]) prefetch_row(b + col[k + AHEAD] * n, n * (int64_t)sizeof(T));      \
            const T *restrict bk = b + col[k] * n;                                                         \
            T s = 0;                                                                                       \
            for (int64_t j = 0; j < n; j++) s += ar[j] * bk[j];                                            \
            vals[k] = s;                                                                                   \
        }                                                                                                  \
    }                                                                                                      \
}                                                                                                          \
                                                                                                           \
/* One SGD step of the kept entries p[index[k]] (kernels/update.py has the same in PyTorch operations):   \
   g = grad[k] (+ fold p, the mask enforcer's weight decay) (negated if maximize) (+ wd p, SGD's own);    \
   b = g at the first step, else momentum b + (1 - dampening) g; d = g + momentum b (nesterov) or b;      \
   p -= lr d. grad holds the kept entries' values in `index` order, or with dense_grad the dense gradient \
   (index NULL: every entry of p); buf is the dense momentum buffer (NULL without momentum). */           \
CLONES void kept_sgd_##S(int64_t nnz, const int64_t *restrict index, T *restrict p, T *restrict buf,        \
                         const T *restrict grad, double fold, double wd, double momentum,                 \
                         double dampening, double lr, int nesterov, int maximize, int first,              \
                         int dense_grad) {                                                                \
    const T tf = (T)fold, tw = (T)wd, tm = (T)momentum, td = (T)(1.0 - dampening), tl = (T)lr;             \
    for (int64_t k = 0; k < nnz; k++) {                                                                    \
        const int64_t i = index ? index[k] : k;                                                            \
        const T v = p[i];                                                                                  \
        T g = grad[dense_grad ? i : k] + tf * v;                                                           \
        if (maximize) g = -g;                                                                              \
        g = g + tw * v;                                                                                    \
        T d = g;                                                                                           \
        if (buf) {                                                                                         \
            const T bk = first ? g : tm * buf[i] + td * g;                                                 \
            buf[i] = bk;                                                                                   \
            d = nesterov ? g + tm * bk : bk;                                                               \
        }                                                                                                  \
        p[i] = v - tl * d;                                                                                 \
    }                                                                                                      \
}                                                                                                          \
                                                                                                           \
INLINE T lane_sum_##S(vec_##S v) {                                                                  \
    T s = 0;                                                                                               \
    for (int l = 0; l < LANES; l++) s += v[l];                                                             \
    return s;                                                                                              \
}                                                                                                          \
                                                                                                           \
/* out (n, rows) = in (n, cols) W^T (+ bias), all row-major: a linear layer's y = x W^T + b and, with the  \
   transposed structure, dL/dX = dL/dY W. Returns 0, or -1 if out of memory. */                            \
CLONES int rows_mm_##S(int64_t rows, int64_t cols, int64_t n, const int64_t *restrict crow,                 \
                       const int64_t *restrict col, const int64_t *restrict index, const T *restrict w,     \
                       const T *restrict in, const T *restrict bias, T *restrict out) {                     \
    vec_##S *xb = vectors(cols, sizeof(vec_##S)), *yb = vectors(rows, sizeof(vec_##S));                     \
    T *vals = vectors(crow[rows], sizeof(T)); /* the kept values, gathered once for all blocks */          \
    if (!xb || !yb || !vals) { free(xb); free(yb); free(vals); return -1; }                                \
    for (int64_t k = 0; k < crow[rows]; k++) vals[k] = w[index[k]];                                        \
    for (int64_t n0 = 0; n0 < n; n0 += LANES) {                                                            \
        const int64_t m = n - n0 < LANES ? n - n0 : LANES;                                                 \
        load_block_##S(in + n0 * cols, cols, m, xb);                                                       \
        for (int64_t r = 0; r < rows; r++) {                                                               \
            /* two sums: a multiply-add waits for the one before it on the same sum */                     \
            vec_##S acc = {0}, acc2 = {0};                                                                 \
            if (bias) acc += bias[r];                                                                      \
            int64_t k = crow[r];                                                                           \
            for (; k + 1 < crow[r + 1]; k += 2) {                                                          \
                acc += vals[k] * xb[col[k]];                                                               \
                acc2 += vals[k + 1] * xb[col[k + 1]];                                                      \
            }                                                                                              \
            if (k < crow[r + 1]) acc += vals[k] * xb[col[k]];                                              \
            yb[r] = acc + acc2;                                                                            \
        }                                                                                                  \
        store_block_##S(yb, rows, m, out + n0 * rows);                                                     \
    }                                                                                                      \
    free(xb);                                                                                              \
    free(yb);                                                                                              \
    free(vals);                                                                                            \
    return 0;                                                                                              \
}                                                                                                          \
                                                                                                           \
/* vals[k] = sum_n g[n, r] x[n, col[k]] over the kept entries k of row r, for g = dL/dY (n, rows) and      \
   x (n, cols) row-major: dL/dW at the kept entries, in `index` order; with bias_grad also                 \
   bias_grad[r] = sum_n g[n, r]. Returns 0, or -1 if out of memory. */                                     \
CLONES int rows_sampled_##S(int64_t rows, int64_t cols, int64_t n, const int64_t *restrict crow,            \
                            const int64_t *restrict col, const T *restrict g, const T *restrict x,          \
                            T *restrict vals, T *restrict bias_grad) {                                      \
    const int64_t nnz = crow[rows];                                                                        \
    vec_##S *part = vectors(nnz, sizeof(vec_##S)), *gb = vectors(rows, sizeof(vec_##S));                    \
    vec_##S *xb = vectors(cols, sizeof(vec_##S)), *bsum = vectors(rows, sizeof(vec_##S));                   \
    if (!part || !gb || !xb || !bsum) { free(part); free(gb); free(xb); free(bsum); return -1; }           \
    for (int64_t n0 = 0; n0 < n; n0 += LANES) {                                                            \
        const int64_t m = n - n0 < LANES ? n - n0 : LANES;                                                 \
        load_block_##S(g + n0 * rows, rows, m, gb);                                                        \
        load_block_##S(x + n0 * cols, cols, m, xb);                                                        \
        for (int64_t r = 0; r < rows; r++) {                                                               \
            const vec_##S a = gb[r];                                                                       \
            bsum[r] += a;                                                                                  \
            for (int64_t k = crow[r]; k < crow[r + 1]; k++) part[k] += a * xb[col[k]];                     \
        }                                                                                                  \
    }                                                                                                      \
    for (int64_t k = 0; k < nnz; k++) vals[k] = lane_sum_##S(part[k]);                                     \
    if (bias_grad)                                                                                         \
        for (int64_t r = 0; r < rows; r++) bias_grad[r] = lane_sum_##S(bsum[r]);                           \
    free(part);                                                                                            \
    free(gb);                                                                                              \
    free(xb);                                                                                              \
    free(bsum);                                                                                            \
    return 0;                                                                                              \
}                                                                                                          \
                                                                                                           \
/* The composition of an interspace layer's filters, W = beta F (layers/interspace.py, eq. 5.5), and its  \
   backward, dL/dbeta = dL/dW F^T and dL/dF = beta^T dL/dW, for beta (m, n), F (n, k2), W (m, k2) with  \
   m = c_out c_in filters: per filter a few dozen multiply-adds, so the passes over beta, W and their      \
   gradients are memory-bound; BLAS runs these 9-wide products at a fraction of that speed (bench_ip.py). \
   The 3 x 3 case with n = 9 has its loop bounds fixed so that the compiler unrolls them. */               \
/* out[r, :] = sum_i a[r, i] f[i, :] for 9 x 9 f: columns 0-7 of each row of f in a vector, the 9th apart */ \
INLINE void compose9_##S(int64_t m, const T *restrict a, const T *restrict f, T *restrict out) {            \
    vec_##S fv[9];                                                                                         \
    for (int i = 0; i < 9; i++) memcpy(&fv[i], f + i * 9, sizeof fv[i]);                                   \
    for (int64_t r = 0; r < m; r++) {                                                                      \
        vec_##S acc = {0};                                                                                 \
        T last = 0;                                                                                        \
        for (int i = 0; i < 9; i++) {                                                                      \
            acc += a[r * 9 + i] * fv[i];                                                                   \
            last += a[r * 9 + i] * f[i * 9 + 8];                                                           \
        }                                                                                                  \
        memcpy(out + r * 9, &acc, sizeof acc);                                                             \
        out[r * 9 + 8] = last;                                                                             \
    }                                                                                                      \
}                                                                                                          \
                                                                                                           \
CLONES void compose_##S(int64_t m, int64_t n, int64_t k2, const T *restrict beta, const T *restrict basis,  \
                        T *restrict w) {                                                                    \
    if (n == 9 && k2 == 9) {                                                                               \
        compose9_##S(m, beta, basis, w);                                                                   \
        return;                                                                                            \
    }                                                                                                      \
    for (int64_t r = 0; r < m; r++)                                                                        \
        for (int64_t j = 0; j < k2; j++) {                                                                 \
            T acc = 0;                                                                                     \
            for (int64_t i = 0; i < n; i++) acc += beta[r * n + i] * basis[i * k2 + j];                    \
            w[r * k2 + j] = acc;                                                                           \
        }                                                                                                  \
}                                                                                                          \
                                                                                                           \
/* grad_beta = grad F^T (if not NULL); grad_basis = beta^T grad (if not NULL; summed per block of 256      \
   filters in T, the blocks in double). Returns 0, or -1 if out of memory. */                             \
CLONES int compose_backward_##S(int64_t m, int64_t n, int64_t k2, const T *restrict grad,                   \
                                const T *restrict beta, const T *restrict basis, T *restrict grad_beta,     \
                                T *restrict grad_basis) {                                                   \
    if (grad_beta) {                                                                                       \
        if (n == 9 && k2 == 9) { /* grad F^T: the forward's loop with F^T */                             \
            T ft[81];                                                                                      \
            for (int i = 0; i < 9; i++)                                                                    \
                for (int j = 0; j < 9; j++) ft[j * 9 + i] = basis[i * 9 + j];                              \
            compose9_##S(m, grad, ft, grad_beta);                                                          \
        } else {                                                                                           \
            for (int64_t r = 0; r < m; r++)                                                                \
                for (int64_t i = 0; i < n; i++) {                                                          \
                    T acc = 0;                                                                             \
                    for (int64_t j = 0; j < k2; j++) acc += grad[r * k2 + j] * basis[i * k2 + j];          \
                    grad_beta[r * n + i] = acc;                                                            \
                }                                                                                          \
        }                                                                                                  \
    }                                                                                                      \
    if (grad_basis) {                                                                                      \
        T *part = vectors(n * k2, sizeof(T));                                                              \
        double *total = vectors(n * k2, sizeof(double));                                                   \
        if (!part || !total) { free(part); free(total); return -1; }                                       \
        for (int64_t r0 = 0; r0 < m; r0 += 256) {                                                          \
            const int64_t r1 = r0 + 256 < m ? r0 + 256 : m;                                                \
            memset(part, 0, (size_t)(n * k2) * sizeof(T));                                                 \
            if (n == 9 && k2 == 9) { /* row i of the block: 8 columns in a vector, the 9th apart */        \
                vec_##S acc[9];                                                                            \
                T last[9];                                                                                 \
                for (int i = 0; i < 9; i++) { acc[i] = (vec_##S){0}; last[i] = 0; }                        \
                for (int64_t r = r0; r < r1; r++) {                                                        \
                    vec_##S g;                                                                             \
                    memcpy(&g, grad + r * 9, sizeof g);                                                    \
                    const T g8 = grad[r * 9 + 8];                                                          \
                    for (int i = 0; i < 9; i++) {                                                          \
                        const T b = beta[r * 9 + i];                                                       \
                        acc[i] += b * g;                                                                   \
                        last[i] += b * g8;                                                                 \
                    }                                                                                      \
                }                                                                                          \
                for (int i = 0; i < 9; i++) {                                                              \
                    for (int j = 0; j < 8; j++) part[i * 9 + j] = acc[i][j];                               \
                    part[i * 9 + 8] = last[i];                                                             \
                }                                                                                          \
            } else                                                                                         \
            for (int64_t r = r0; r < r1; r++)                                                              \
                for (int64_t i = 0; i < n; i++) {                                                          \
                    const T b = beta[r * n + i];                                                           \
                    for (int64_t j = 0; j < k2; j++) part[i * k2 + j] += b * grad[r * k2 + j];             \
                }                                                                                          \
            for (int64_t e = 0; e < n * k2; e++) total[e] += part[e];                                      \
        }                                                                                                  \
        for (int64_t e = 0; e < n * k2; e++) grad_basis[e] = (T)total[e];                                  \
        free(part);                                                                                        \
        free(total);                                                                                       \
    }                                                                                                      \
    return 0;                                                                                              \
}

KERNELS(float, f32)
KERNELS(double, f64)
