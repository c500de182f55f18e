/*
 * The vector kernels' bodies, included twice by vector_math.c: once for baseline x86-64 (SSE2, multiply
 * then add) and once under target("avx2,fma") (fused multiply-add). VM(name) gives each copy its own
 * names; VM_MADD(a, b, c) is a·b + c in that copy's arithmetic. Eight lanes in both: baseline code runs
 * them as two SSE halves, so the two copies sum in the same order and differ only by FMA rounding.
 */

/* e^x in eight lanes: Cephes' expf polynomial (≤ 2 ulp), n = round(x·log2 e) by the 1.5·2²³ trick.
   0 below −87.34 (float32 exp leaves the normal range), +∞ above 88.376 (2ⁿ would overflow), NaN in,
   NaN out: the clamps are compare-and-select, so a NaN lane is never replaced. */
INLINE v8f VM(exp8)(v8f x) {
    const v8f hi = splat(88.3762626647949f), lo = splat(-87.33654022216797f);
    const v8f magic = splat(12582912.0f); /* 1.5 · 2²³ */
    v8f xc = select(x > hi, hi, x);
    xc = select(xc < lo, lo, xc);
    v8f t = VM_MADD(xc, splat(1.44269504088896341f), magic);
    v8f n = t - magic;
    v8f r = VM_MADD(n, splat(-0.693359375f), xc);
    r = VM_MADD(n, splat(2.12194440e-4f), r);
    v8f z = r * r;
    v8f p = splat(1.9875691500e-4f);
    p = VM_MADD(p, r, splat(1.3981999507e-3f));
    p = VM_MADD(p, r, splat(8.3334519073e-3f));
    p = VM_MADD(p, r, splat(4.1665795894e-2f));
    p = VM_MADD(p, r, splat(1.6666665459e-1f));
    p = VM_MADD(p, r, splat(5.0000001201e-1f));
    p = VM_MADD(p, z, r) + 1.0f;
    v8i e = ((v8i)t - (v8i)magic + 127) << 23; /* 2ⁿ: n sits in t's low mantissa bits */
    v8f result = p * (v8f)e;
    result = select(x < lo, splat(0.0f), result);
    return select(x > hi, splat(INFINITY), result);
}

static float VM(exp1)(float x) {
    v8f v = splat(x);
    return VM(exp8)(v)[0];
}

static float VM(exp_shifted)(float *x, long n, float shift) {
    v8f acc = splat(0.0f);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f e = VM(exp8)(load8(x + i) - shift);
        store8(x + i, e);
        acc += e;
    }
    float sum = hsum8(acc);
    if (i < n) {
        v8f e = VM(exp8)(loadPartial8(x + i, n - i) - shift);
        for (long j = 0; j < n - i; j++) { x[i + j] = e[j]; sum += e[j]; }
    }
    return sum;
}

static double VM(exp_shifted_sum)(const float *x, long n, float shift) {
    double sum = 0;
    long i = 0;
    for (; i + 8 <= n; i += 8) sum += (double)hsum8(VM(exp8)(load8(x + i) - shift));
    if (i < n) {
        v8f e = VM(exp8)(loadPartial8(x + i, n - i) - shift);
        for (long j = 0; j < n - i; j++) sum += (double)e[j];
    }
    return sum;
}

static float VM(maximum)(const float *x, long n) {
    v8f m = splat(-INFINITY);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = load8(x + i);
        m = select(v > m, v, m);
    }
    float best = m[0];
    for (int j = 1; j < 8; j++) if (m[j] > best) best = m[j];
    for (; i < n; i++) if (x[i] > best) best = x[i];
    return best;
}

/* silu(g)·u = g / (1 + e^(−g)) · u */
INLINE v8f VM(silu_mul8)(v8f g, v8f u) { return g / (1.0f + VM(exp8)(-g)) * u; }

static void VM(silu_mul)(float *out, const float *gate, const float *up, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) store8(out + i, VM(silu_mul8)(load8(gate + i), load8(up + i)));
    if (i < n) {
        v8f o = VM(silu_mul8)(loadPartial8(gate + i, n - i), loadPartial8(up + i, n - i));
        for (long j = 0; j < n - i; j++) out[i + j] = o[j];
    }
}

/* s = σ(g): dup = d·g·s, dgate = d·u·s·(1 + g·(1 − s)). */
INLINE void VM(silu_mul_backward8)(v8f d, v8f g, v8f u, v8f *dgate, v8f *dup) {
    v8f s = 1.0f / (1.0f + VM(exp8)(-g));
    *dup = d * g * s;
    *dgate = d * u * s * VM_MADD(g, 1.0f - s, splat(1.0f));
}

static void VM(silu_mul_backward)(float *dgate, float *dup, const float *dact, const float *gate, const float *up, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f dg, du;
        VM(silu_mul_backward8)(load8(dact + i), load8(gate + i), load8(up + i), &dg, &du);
        store8(dup + i, du);
        store8(dgate + i, dg);
    }
    if (i < n) {
        long r = n - i;
        v8f dg, du;
        VM(silu_mul_backward8)(loadPartial8(dact + i, r), loadPartial8(gate + i, r), loadPartial8(up + i, r), &dg, &du);
        for (long j = 0; j < r; j++) { dup[i + j] = du[j]; dgate[i + j] = dg[j]; }
    }
}

/* 2:4-style ranking of groups of four: entry i of a group is pruned when fewer than k entries rank before
   it, where j ranks before i if s_j < s_i, or s_j == s_i and j < i (a stable sort's order). Of each pair
   exactly one counts toward the other's rank. Eight groups at a time: four loads transposed into one
   vector per position, the six comparisons, and the four flags of a group packed into one 32-bit lane,
   whose bytes are the group's four bools in order (x86 is little-endian). */
static void VM(prune_lowest_of_4)(const float *s, long groups, int k, unsigned char *pruned) {
    long g = 0;
    const v8i kk = {k, k, k, k, k, k, k, k};
    for (; g + 8 <= groups; g += 8) {
        const float *p = s + 4 * g;
        v8f l0 = load8(p), l1 = load8(p + 8), l2 = load8(p + 16), l3 = load8(p + 24);
        v8f t0 = __builtin_shufflevector(l0, l1, 0, 4, 8, 12, 1, 5, 9, 13);  /* a0..a3 b0..b3 */
        v8f t1 = __builtin_shufflevector(l0, l1, 2, 6, 10, 14, 3, 7, 11, 15); /* c0..c3 d0..d3 */
        v8f u0 = __builtin_shufflevector(l2, l3, 0, 4, 8, 12, 1, 5, 9, 13);  /* a4..a7 b4..b7 */
        v8f u1 = __builtin_shufflevector(l2, l3, 2, 6, 10, 14, 3, 7, 11, 15); /* c4..c7 d4..d7 */
        v8f a = __builtin_shufflevector(t0, u0, 0, 1, 2, 3, 8, 9, 10, 11);
        v8f b = __builtin_shufflevector(t0, u0, 4, 5, 6, 7, 12, 13, 14, 15);
        v8f c = __builtin_shufflevector(t1, u1, 0, 1, 2, 3, 8, 9, 10, 11);
        v8f d = __builtin_shufflevector(t1, u1, 4, 5, 6, 7, 12, 13, 14, 15);
        /* comparison lanes are −1 (true) or 0 */
        v8i ba = b < a, ca = c < a, da = d < a, cb = c < b, db = d < b, dc = d < c;
        v8i r0 = -(ba + ca + da);
        v8i r1 = 1 + ba - cb - db;
        v8i r2 = 2 + ca + cb - dc;
        v8i r3 = 3 + da + db + dc;
        v8i flags = ((r0 < kk) & 1) | (((r1 < kk) & 1) << 8) | (((r2 < kk) & 1) << 16) | (((r3 < kk) & 1) << 24);
        memcpy(pruned + 4 * g, &flags, sizeof flags);
    }
    for (; g < groups; g++) {
        const float *q = s + 4 * g;
        unsigned char *o = pruned + 4 * g;
        int ba = q[1] < q[0], ca = q[2] < q[0], da = q[3] < q[0], cb = q[2] < q[1], db = q[3] < q[1], dc = q[3] < q[2];
        o[0] = ba + ca + da < k;
        o[1] = (1 - ba) + cb + db < k;
        o[2] = (1 - ca) + (1 - cb) + dc < k;
        o[3] = (1 - da) + (1 - db) + (1 - dc) < k;
    }
}

/* Σ x[i]² in double: four double lanes (two per eight floats), the lanes then the tail added in order. */
static double VM(sum_squares)(const float *x, long n) {
    v4d lo = splat4d(0.0), hi = splat4d(0.0);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = load8(x + i);
        v4d a = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), v4d);
        v4d b = __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), v4d);
        lo = VM_MADD(a, a, lo);
        hi = VM_MADD(b, b, hi);
    }
    v4d t = lo + hi;
    double sum = (t[0] + t[2]) + (t[1] + t[3]);
    for (; i < n; i++) { double v = x[i]; sum += v * v; }
    return sum;
}

/* acc[i] += x[i]² in double. */
static void VM(add_squares)(double *acc, const float *x, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = load8(x + i);
        v4d a = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), v4d);
        v4d b = __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), v4d);
        store4d(acc + i, VM_MADD(a, a, load4d(acc + i)));
        store4d(acc + i + 4, VM_MADD(b, b, load4d(acc + i + 4)));
    }
    for (; i < n; i++) { double v = x[i]; acc[i] += v * v; }
}

/* One RMSprop step (PyTorch's, no momentum, not centered): v = a·v + (1 − a)·g², θ −= lr·g / (√v + ε). */
INLINE void VM(rmsprop8)(v8f *p, v8f *v, v8f g, float a, float lr, float eps) {
    v8f s = VM_MADD(splat(a), *v, ((1.0f - a) * g) * g);
    *v = s;
    *p = *p - lr * (g / (__builtin_elementwise_sqrt(s) + eps));
}

static void VM(rmsprop_update)(float *param, float *avg, const float *grad, long n, float a, float lr, float eps) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f p = load8(param + i), v = load8(avg + i);
        VM(rmsprop8)(&p, &v, load8(grad + i), a, lr, eps);
        store8(param + i, p);
        store8(avg + i, v);
    }
    if (i < n) {
        long r = n - i;
        v8f p = loadPartial8(param + i, r), v = loadPartial8(avg + i, r);
        VM(rmsprop8)(&p, &v, loadPartial8(grad + i, r), a, lr, eps);
        for (long j = 0; j < r; j++) { param[i + j] = p[j]; avg[i + j] = v[j]; }
    }
}

static const struct llmprune_vector_kernels VM(kernels) = {
    VM_ISA, VM(exp1), VM(exp_shifted), VM(exp_shifted_sum), VM(maximum), VM(silu_mul), VM(silu_mul_backward),
    VM(prune_lowest_of_4), VM(sum_squares), VM(add_squares), VM(rmsprop_update)
};
