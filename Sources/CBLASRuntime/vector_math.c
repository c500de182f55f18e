/*
 * The elementwise kernels behind softmax, SiLU, log-softmax, RMSNorm, the 2:4 ranking and RMSprop, in two copies chosen once by the CPU:
 * baseline x86-64 (the package builds for SSE2, where eight lanes take two instructions each and a
 * multiply-add two more) and AVX2 with FMA (one instruction each). A Swift function cannot carry a
 * target attribute, so the kernels that run over every attention score and every MLP activation live
 * here; they were 8–9 % of a Wanda run's CPU time on SmolLM2 in their baseline form.
 */
#include "blas_runtime.h"

#include <math.h>
#include <string.h>

/* Every function taking or returning an eight-lane vector is static and always inlined into a copy
   compiled for one instruction set, so the two ways of passing one never meet in a call. */
#pragma clang diagnostic ignored "-Wpsabi"

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));

#define INLINE static inline __attribute__((always_inline))

/* The lane helpers are macros, not functions: a helper compiled for baseline x86-64 cannot take or return
   a 32-byte vector from the AVX2 copy (the two pass it differently), and a macro is compiled in each. */
#define splat(x) ((v8f){(x), (x), (x), (x), (x), (x), (x), (x)})
#define load8(p) ({ v8f v_; memcpy(&v_, (p), sizeof v_); v_; })
#define store8(p, v) ({ v8f w_ = (v); memcpy((p), &w_, sizeof w_); })
#define splat4d(x) ((v4d){(x), (x), (x), (x)})
#define load4d(p) ({ v4d v_; memcpy(&v_, (p), sizeof v_); v_; })
#define store4d(p, v) ({ v4d w_ = (v); memcpy((p), &w_, sizeof w_); })
/* The first `count` (< 8) floats at p, zeros after: the tail of a row goes through the same lanes. */
#define loadPartial8(p, count) ({ v8f v_ = splat(0.0f); memcpy(&v_, (p), (size_t)(count) * sizeof(float)); v_; })
/* Lanes where the mask is set from a, the others from b. */
#define select(mask, a, b) ({ v8i m_ = (mask); (v8f)(((v8i)(a) & m_) | ((v8i)(b) & ~m_)); })
/* Pairwise: (0+4, 1+5, 2+6, 3+7), then (a+c) + (b+d). */
#define hsum8(v) ({ v8f h_ = (v); ((h_[0] + h_[4]) + (h_[2] + h_[6])) + ((h_[1] + h_[5]) + (h_[3] + h_[7])); })

#define VM(name) name##_baseline
#define VM_MADD(a, b, c) ((a) * (b) + (c))
#define VM_ISA "sse2"
#include "vector_math_body.h"
#undef VM
#undef VM_MADD
#undef VM_ISA

#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define VM(name) name##_avx2
#define VM_MADD(a, b, c) __builtin_elementwise_fma((a), (b), (c))
#define VM_ISA "avx2+fma"
#include "vector_math_body.h"
#undef VM
#undef VM_MADD
#undef VM_ISA
#pragma clang attribute pop

const struct llmprune_vector_kernels *llmprune_vector_kernels_baseline(void) { return &kernels_baseline; }

const struct llmprune_vector_kernels *llmprune_vector_kernels_avx2(void) {
    unsigned need = LLMPRUNE_AVX2 | LLMPRUNE_FMA;
    return (llmprune_blas_runtime()->features & need) == need ? &kernels_avx2 : 0;
}

const struct llmprune_vector_kernels *llmprune_vector_kernels(void) {
    static const struct llmprune_vector_kernels *active;
    const struct llmprune_vector_kernels *k = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (k) return k;
    k = llmprune_vector_kernels_avx2();
    if (!k) k = &kernels_baseline;
    __atomic_store_n(&active, k, __ATOMIC_RELEASE);
    return k;
}

float llmprune_exp(float x) { return llmprune_vector_kernels()->exp1(x); }
float llmprune_exp_shifted(float *x, long n, float shift) { return llmprune_vector_kernels()->exp_shifted(x, n, shift); }
double llmprune_exp_shifted_sum(const float *x, long n, float shift) {
    return llmprune_vector_kernels()->exp_shifted_sum(x, n, shift);
}
float llmprune_maximum(const float *x, long n) { return llmprune_vector_kernels()->maximum(x, n); }
void llmprune_silu_mul(float *out, const float *gate, const float *up, long n) {
    llmprune_vector_kernels()->silu_mul(out, gate, up, n);
}
void llmprune_silu_mul_backward(float *dgate, float *dup, const float *dact, const float *gate, const float *up, long n) {
    llmprune_vector_kernels()->silu_mul_backward(dgate, dup, dact, gate, up, n);
}
void llmprune_prune_lowest_of_4(const float *scores, long groups, int k, unsigned char *pruned) {
    llmprune_vector_kernels()->prune_lowest_of_4(scores, groups, k, pruned);
}
double llmprune_sum_squares(const float *x, long n) { return llmprune_vector_kernels()->sum_squares(x, n); }
void llmprune_add_squares(double *acc, const float *x, long n) { llmprune_vector_kernels()->add_squares(acc, x, n); }
void llmprune_rmsprop_update(float *param, float *avg, const float *grad, long n, float smoothing, float lr, float eps) {
    llmprune_vector_kernels()->rmsprop_update(param, avg, grad, n, smoothing, lr, eps);
}
