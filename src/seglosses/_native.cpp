// Native CPU kernels of seglosses' fused paths (see _fused.py for the formulas and the PyTorch fallback).
//
// Plain C ABI over raw pointers (no Python or PyTorch headers): compiled on first use by _native.py with the
// system C++ compiler and loaded with ctypes. Every kernel makes one pass over its input, block by block
// (a block: up to BLOCK pixels of one image, all classes), in `threads` ranges (see parallel: OpenMP or
// std::threads, or the calling thread alone where the cores are busy); per-range sums are accumulated in double and
// added in a fixed order, so results do not depend on timing or on the threads that ran them.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

#ifdef __linux__
#include <sched.h>
#endif

namespace {

#define SL_INLINE inline __attribute__((always_inline))

constexpr int64_t BLOCK = 256;

// exp(x) for x <= 0 (the only arguments used here: x - max, x - logsumexp, -|x|), float32 to about 1 ulp,
// written without calls or branches so that the compiler vectorises the loops around it.
// Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, and the minimax polynomial of exp on that range (as in the
// Cephes library). Results below the smallest normal float (x < -87.3) are flushed to 0; NaN stays NaN.
SL_INLINE float exp_neg(float x) {
    const float xc = x < -87.0f ? -87.0f : x;
    const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const float t = xc * 1.44269504088896341f + shifter;
    const float k = t - shifter;
    float r = std::fma(k, -0.693359375f, xc);
    r = std::fma(k, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = std::fma(p, r, 1.3981999507e-3f);
    p = std::fma(p, r, 8.3334519073e-3f);
    p = std::fma(p, r, 4.1665795894e-2f);
    p = std::fma(p, r, 1.6666665459e-1f);
    p = std::fma(p, r, 5.0000001201e-1f);
    p = std::fma(p, r * r, r) + 1.0f;
    int32_t ti;
    std::memcpy(&ti, &t, 4);
    const int32_t bits = (ti - 0x4B400000 + 127) << 23;  // 2^k, k in [-126, 0]
    float scale;
    std::memcpy(&scale, &bits, 4);
    const float y = p * scale;
    return x < -87.0f ? 0.0f : (x != x ? x : y);
}

SL_INLINE double exp_neg(double x) { return std::exp(x); }

// log(u) for u in [1, 2] (the only arguments used: 1 + e^{-|x|}), float32 to about 1 ulp, vectorisable:
// u = f 2^k with f in [sqrt(1/2), sqrt(2)), log u = k ln2 + log f, log(1 + m) by the Cephes minimax polynomial.
SL_INLINE float log_1to2(float u) {
    int32_t bits;
    std::memcpy(&bits, &u, 4);
    int32_t k = ((bits >> 23) & 0xff) - 126;  // u = f 2^k, f in [0.5, 1)
    const int32_t fb = (bits & 0x007fffff) | 0x3f000000;
    float f;
    std::memcpy(&f, &fb, 4);
    const bool small = f < 0.707106781186547524f;
    k = small ? k - 1 : k;
    const float m = small ? f + f - 1.0f : f - 1.0f;
    const float kf = static_cast<float>(k);
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = std::fma(y, m, -1.1514610310e-1f);
    y = std::fma(y, m, 1.1676998740e-1f);
    y = std::fma(y, m, -1.2420140846e-1f);
    y = std::fma(y, m, 1.4249322787e-1f);
    y = std::fma(y, m, -1.6668057665e-1f);
    y = std::fma(y, m, 2.0000714765e-1f);
    y = std::fma(y, m, -2.4999993993e-1f);
    y = std::fma(y, m, 3.3333331174e-1f);
    y = y * m * z;
    y = std::fma(kf, -2.12194440e-4f, y);
    y = std::fma(z, -0.5f, y);
    return m + y + kf * 0.693359375f;
}

// log1p(e) for e in [0, 1], exact to about 1 ulp also for tiny e: log(u) e / (u - 1) with u = 1 + e.
SL_INLINE float log1p_unit(float e) {
    const float u = 1.0f + e;
    const float d = u - 1.0f;
    const float l = log_1to2(u);
    return d == 0.0f ? e : l * (e / d);
}
SL_INLINE double log1p_unit(double e) { return std::log1p(e); }

// x^g for x in [0, 1] given log x (lx): integer g = IG (0..3) by products (exact at x = 0), else exp(g lx).
template <int IG, typename T>
SL_INLINE T pow_unit(T x, T lx, T g) {
    if constexpr (IG == 0) return T(1);
    if constexpr (IG == 1) return x;
    if constexpr (IG == 2) return x * x;
    if constexpr (IG == 3) return x * x * x;
    if constexpr (IG < 0) return exp_neg(g * lx);
}

// log(x) for x >= 1 (the sums of exponentials after the max was taken out: 1 <= x <= C), vectorisable: the
// decomposition of log_1to2 holds for every positive normal float; NaN stays NaN.
SL_INLINE float log_of(float x) { return x != x ? x : log_1to2(x); }
inline double log_of(double x) { return std::log(x); }

// Sum of a[0:L] with 16 independent partial sums (vectorised; an in-order float sum would not be).
template <typename T>
inline T block_sum(const T* __restrict a, int64_t L) {
    T part[16] = {};
    int64_t j = 0;
    for (; j + 16 <= L; j += 16)
        for (int l = 0; l < 16; ++l) part[l] += a[j + l];
    T s = T(0);
    for (; j < L; ++j) s += a[j];
    for (int l = 0; l < 16; ++l) s += part[l];
    return s;
}

// Dot product of a[0:L] and b[0:L], as block_sum.
template <typename T>
inline T block_dot(const T* __restrict a, const T* __restrict b, int64_t L) {
    T part[16] = {};
    int64_t j = 0;
    for (; j + 16 <= L; j += 16)
        for (int l = 0; l < 16; ++l) part[l] += a[j + l] * b[j + l];
    T s = T(0);
    for (; j < L; ++j) s += a[j] * b[j];
    for (int l = 0; l < 16; ++l) s += part[l];
    return s;
}

// ---------------------------------------------------------------------------------------------------------------
// Threads. A kernel splits its work into nt = min(threads, items) contiguous ranges and keeps one accumulator per
// range, added in range order: the numbers depend on `threads` only, never on which thread ran a range, on how
// many threads the runtime gave, or on whether the ranges ran one after the other.
//
// A parallel region (fork-join) ends when every thread of its team has arrived. On a machine whose cores are busy
// with other processes (DataLoader workers, another job), a team thread is often descheduled when the region
// starts or in the middle of its range, and the region then waits a whole scheduler slice (milliseconds) for it.
// So a region here (1) hands its ranges out one at a time (an atomic counter), so that a thread that arrives late
// finds them done by the others; (2) times itself: its gain is (S - wall) / S, with S = nt times its fastest
// range (what the calling thread alone would have taken), about 1 - 1/nt on idle cores and negative where the
// region waited for a descheduled thread. Where the moving average of the gains (weight GAIN_WEIGHT, each gain
// clamped at -1) turns negative, forking has cost more than it saved of late, and the calls of the process run
// their ranges on the calling thread for a back-off period (20 ms, doubled after each probe that still loses, up
// to 0.5 s); then one call probes with a team again, and a probe that gains ends the back-off. An occasional
// preemption on a mostly idle machine leaves the average positive (the team still wins there). (3) A call runs
// on the calling thread when its work is small (under SERIAL_ELEMENTS elements: a fork costs more than it saves)
// or when the process may use a single core (sched_getaffinity).
// With OpenMP the team is PyTorch's own OpenMP pool (the library is loaded after PyTorch's libgomp, and the loader
// reuses it), so the kernels do not compete with PyTorch's spinning workers; without OpenMP, std::threads.

constexpr int64_t SERIAL_ELEMENTS = 32768;        // below this many elements a call runs on the calling thread
constexpr int64_t BACKOFF_MIN_NS = 20000000;      // first serial period after a contended region: 20 ms
constexpr int64_t BACKOFF_MAX_NS = 500000000;     // longest serial period: 0.5 s
constexpr double GAIN_WEIGHT = 0.25;              // weight of a region's gain in the moving average

std::atomic<int64_t> g_serial_until{0};           // steady-clock ns: until then every call runs serially
std::atomic<int64_t> g_backoff{BACKOFF_MIN_NS};   // the next serial period
std::atomic<int64_t> g_contended{0};              // back-off periods started (for tests and reports)
std::atomic<double> g_gain{0.5};                  // moving average of the teams' gains (negative: contended)
std::atomic<int64_t> g_force{0};                  // 0: adaptive; 1: always fork; 2: always serial

inline int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// CPUs this process may run on (its affinity mask), or a large number where that cannot be read.
inline int64_t usable_cpus() {
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return std::numeric_limits<int>::max();
}

// Run fn(r, begin, end) once for every range r of [0, items) split into nt = min(threads, items) contiguous ranges
// (range r is [items r / nt, items (r + 1) / nt)); `elements`: about how many elements the call reads (the
// small-work test; negative: unknown, never small).
template <class Fn>
void parallel(int64_t items, int threads, const Fn& fn, int64_t elements = -1) {
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, items));
    auto run = [&](int64_t r) { fn(static_cast<int>(r), items * r / nt, items * (r + 1) / nt); };
    const int64_t force = g_force.load(std::memory_order_relaxed);
    const int64_t start = now_ns();
    bool serial = nt == 1 || force == 2;
    if (!serial && force != 1) {
        serial = (elements >= 0 && elements < SERIAL_ELEMENTS) ||
                 start < g_serial_until.load(std::memory_order_relaxed) || usable_cpus() < 2;
    }
    if (serial) {
        for (int64_t r = 0; r < nt; ++r) run(r);
        return;
    }
    const int team = static_cast<int>(std::min<int64_t>(nt, usable_cpus()));
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> fastest{std::numeric_limits<int64_t>::max()};
    auto work = [&]() {
        for (int64_t r = next.fetch_add(1); r < nt; r = next.fetch_add(1)) {
            const int64_t t0 = now_ns();
            run(r);
            const int64_t took = now_ns() - t0;
            int64_t seen = fastest.load(std::memory_order_relaxed);
            while (took < seen && !fastest.compare_exchange_weak(seen, took, std::memory_order_relaxed)) {
            }
        }
    };
#ifdef _OPENMP
#pragma omp parallel num_threads(team)
    work();
#else
    std::vector<std::thread> pool;
    pool.reserve(team - 1);
    for (int i = 1; i < team; ++i) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
#endif
    if (force == 1) return;
    const int64_t end = now_ns();
    const double alone = static_cast<double>(nt) * static_cast<double>(fastest.load(std::memory_order_relaxed));
    const double gain = std::max(-1.0, alone > 0 ? (alone - static_cast<double>(end - start)) / alone : 0.0);
    const double before = g_gain.load(std::memory_order_relaxed);
    // a probe (the first team after a back-off) that gains ends the back-off; otherwise the average decides
    const double average = before < 0 && gain > 0 ? gain : (1 - GAIN_WEIGHT) * before + GAIN_WEIGHT * gain;
    g_gain.store(average, std::memory_order_relaxed);
    if (average < 0) {
        const int64_t period = g_backoff.load(std::memory_order_relaxed);
        g_serial_until.store(end + period, std::memory_order_relaxed);
        g_backoff.store(std::min(2 * period, BACKOFF_MAX_NS), std::memory_order_relaxed);
        g_contended.fetch_add(1, std::memory_order_relaxed);
    } else {
        g_backoff.store(BACKOFF_MIN_NS, std::memory_order_relaxed);
    }
}

// Sum per-thread accumulators (threads x size) into out (size), in thread order.
void reduce_into(const std::vector<double>& acc, int64_t threads, int64_t size, double* out) {
    for (int64_t i = 0; i < size; ++i) out[i] = 0.0;
    for (int64_t th = 0; th < threads; ++th)
        for (int64_t i = 0; i < size; ++i) out[i] += acc[th * size + i];
}

// Per pixel j < L of a block (class c at xb + c M): mx = max_c x, se = sum_c exp(x - mx), and with eb (not null)
// the exponentials (class c at eb + c BLOCK).
template <typename T>
SL_INLINE void softmax_block(const T* __restrict xb, int64_t C, int64_t M, int64_t L, T* __restrict mx,
                             T* __restrict se, T* __restrict eb) {
    for (int64_t j = 0; j < L; ++j) mx[j] = xb[j];
    for (int64_t c = 1; c < C; ++c) {
        const T* xc = xb + c * M;
        for (int64_t j = 0; j < L; ++j) mx[j] = xc[j] > mx[j] ? xc[j] : mx[j];
    }
    for (int64_t j = 0; j < L; ++j) se[j] = T(0);
    if (eb != nullptr) {
        for (int64_t c = 0; c < C; ++c) {
            const T* xc = xb + c * M;
            T* ec = eb + c * BLOCK;
            for (int64_t j = 0; j < L; ++j) {
                const T e = exp_neg(xc[j] - mx[j]);
                ec[j] = e;
                se[j] += e;
            }
        }
    } else {
        for (int64_t c = 0; c < C; ++c) {
            const T* xc = xb + c * M;
            for (int64_t j = 0; j < L; ++j) se[j] += exp_neg(xc[j] - mx[j]);
        }
    }
}

// Per class c of a block, the sums over its pixels j < L (p_cj = eb_c[j] inv[j], inv = v / se):
// psum += sum_j p_cj, tp += sum_j [t_j = c] p_cj, gsum += sum_j [t_j = c] v_j. Branch-free and vectorised:
// 16 partial sums per quantity in T (at most BLOCK / 16 terms each), then added into the double accumulators.
template <bool HV, typename T>
SL_INLINE void index_stats_block(const T* __restrict ebuf, const T* __restrict inv, const int32_t* __restrict tt,
                                 const T* __restrict vb, int64_t C, int64_t L, double* __restrict a_ps,
                                 double* __restrict a_tp, double* __restrict a_gs) {
    for (int64_t c = 0; c < C; ++c) {
        const T* eb = ebuf + c * BLOCK;
        const int32_t cc = static_cast<int32_t>(c);
        T ps[16] = {}, tp[16] = {}, gs[16] = {};
        int64_t j = 0;
        for (; j + 16 <= L; j += 16) {
            for (int l = 0; l < 16; ++l) {
                const T p = eb[j + l] * inv[j + l];
                const T m = static_cast<T>(tt[j + l] == cc);  // 0 or 1: products, not branches
                ps[l] += p;
                tp[l] += m * p;
                gs[l] += HV ? m * vb[j + l] : m;
            }
        }
        T sps = T(0), stp = T(0), sgs = T(0);
        for (; j < L; ++j) {
            const T p = eb[j] * inv[j];
            const T m = static_cast<T>(tt[j] == cc);
            sps += p;
            stp += m * p;
            sgs += HV ? m * vb[j] : m;
        }
        for (int l = 0; l < 16; ++l) {
            sps += ps[l];
            stp += tp[l];
            sgs += gs[l];
        }
        a_ps[c] += sps;
        a_tp[c] += stp;
        a_gs[c] += sgs;
    }
}

// Softmax over the classes of x (N, C, M) with index targets t (N, M):
// lse = logsumexp_c x; logpt = x_t - lse (if logpt); per image and class, psum = sum v p_c, tp = sum v p_t [c = t],
// gsum = sum v [c = t] (if need_stats). Returns 1 if an index is outside [0, C) (nothing is written then
// that the caller will use), else 0.
template <typename T>
int softmax_index_fwd(const T* __restrict x, const int64_t* __restrict t, const T* __restrict valid, int64_t N,
                      int64_t C, int64_t M, T* __restrict lse, T* __restrict logpt, double* psum, double* tp,
                      double* gsum, int need_stats, int threads) {
    const int64_t nb = (M + BLOCK - 1) / BLOCK;
    const int64_t items = N * nb;
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, items));
    const int64_t sz = N * C;
    std::vector<double> acc(need_stats ? nt * 3 * sz : 0, 0.0);
    std::vector<int> bad(nt, 0);
    parallel(items, static_cast<int>(nt), [&](int th, int64_t begin, int64_t end) {
        std::vector<T> ebuf(need_stats ? C * BLOCK : 0);
        T mx[BLOCK], se[BLOCK], inv[BLOCK];
        int32_t tt[BLOCK];
        double* a_ps = need_stats ? acc.data() + th * 3 * sz : nullptr;
        double* a_tp = need_stats ? a_ps + sz : nullptr;
        double* a_gs = need_stats ? a_tp + sz : nullptr;
        for (int64_t it = begin; it < end; ++it) {
            const int64_t n = it / nb;
            const int64_t j0 = (it % nb) * BLOCK;
            const int64_t L = std::min<int64_t>(BLOCK, M - j0);
            const T* xb = x + n * C * M + j0;
            const int64_t* tb = t + n * M + j0;
            int out_of_range = 0;
            for (int64_t j = 0; j < L; ++j) {
                out_of_range |= (tb[j] < 0) | (tb[j] >= C);
                tt[j] = static_cast<int32_t>(tb[j]);
            }
            if (out_of_range) {
                bad[th] = 1;
                return;
            }
            softmax_block(xb, C, M, L, mx, se, need_stats ? ebuf.data() : nullptr);
            T* lb = lse + n * M + j0;
            for (int64_t j = 0; j < L; ++j) lb[j] = log_of(se[j]) + mx[j];
            if (logpt != nullptr) {
                T* ob = logpt + n * M + j0;
                for (int64_t j = 0; j < L; ++j) ob[j] = xb[tt[j] * M + j] - lb[j];
            }
            if (need_stats) {
                const T* vb = valid != nullptr ? valid + n * M + j0 : nullptr;
                if (vb != nullptr) {
                    for (int64_t j = 0; j < L; ++j) inv[j] = vb[j] / se[j];
                    index_stats_block<true>(ebuf.data(), inv, tt, vb, C, L, a_ps + n * C, a_tp + n * C, a_gs + n * C);
                } else {
                    for (int64_t j = 0; j < L; ++j) inv[j] = T(1) / se[j];
                    index_stats_block<false>(ebuf.data(), inv, tt, vb, C, L, a_ps + n * C, a_tp + n * C,
                                             a_gs + n * C);
                }
            }
        }
    }, N * C * M);
    for (int64_t th = 0; th < nt; ++th)
        if (bad[th]) return 1;
    if (need_stats) {
        std::vector<double> part(nt * sz);
        for (int which = 0; which < 3; ++which) {
            for (int64_t th = 0; th < nt; ++th)
                std::memcpy(part.data() + th * sz, acc.data() + th * 3 * sz + which * sz, sz * sizeof(double));
            reduce_into(part, nt, sz, which == 0 ? psum : (which == 1 ? tp : gsum));
        }
    }
    return 0;
}

// The gradient of one block (see softmax_index_bwd), branch-free per class so that every loop vectorises:
// with A_c = g_psum_c + [c = t] g_tp_c and S' = sum_c p_c A_c, dx_c = p_c (v (A_c - S') - k) + [c = t] k.
template <bool HV, bool HK, typename T>
SL_INLINE void softmax_index_bwd_block(const T* __restrict xb, const int32_t* __restrict tt, const T* __restrict vb,
                                       const T* __restrict lb, const T* __restrict kb, const T* __restrict gt,
                                       const T* __restrict gp, int64_t C, int64_t M, int64_t L, T* __restrict pbuf,
                                       T* __restrict gb) {
    T s[BLOCK];
    for (int64_t j = 0; j < L; ++j) s[j] = T(0);
    for (int64_t c = 0; c < C; ++c) {
        const T* xc = xb + c * M;
        T* pb = pbuf + c * BLOCK;
        const int32_t cc = static_cast<int32_t>(c);
        const T a0 = gp[c], a1 = gp[c] + gt[c];
        for (int64_t j = 0; j < L; ++j) {
            const T p = exp_neg(xc[j] - lb[j]);
            pb[j] = p;
            s[j] += p * (tt[j] == cc ? a1 : a0);
        }
    }
    for (int64_t c = 0; c < C; ++c) {
        const T* pb = pbuf + c * BLOCK;
        T* oc = gb + c * M;
        const int32_t cc = static_cast<int32_t>(c);
        const T a0 = gp[c], a1 = gp[c] + gt[c];
        for (int64_t j = 0; j < L; ++j) {
            const bool m = tt[j] == cc;
            const T k = HK ? kb[j] : T(0);
            const T d = (m ? a1 : a0) - s[j];
            const T q = pb[j] * ((HV ? vb[j] * d : d) - k);
            oc[j] = m ? q + k : q;
        }
    }
}

// Gradient of the softmax-index outputs w.r.t. x (see _fused.py):
// dx_c = p_c (v A_c - S - k) + [c = t] k,  A_c = g_psum_c + [c = t] g_tp_c,  S = sum_c p_c v A_c
// (without need_stats: dx_c = -p_c k + [c = t] k). k (N, M) may be null (no pixel term).
template <typename T>
void softmax_index_bwd(const T* __restrict x, const int64_t* __restrict t, const T* __restrict valid,
                       const T* __restrict lse, const T* __restrict kpix, const T* __restrict g_tp,
                       const T* __restrict g_psum, int64_t N, int64_t C, int64_t M, int need_stats,
                       T* __restrict grad, int threads) {
    const int64_t nb = (M + BLOCK - 1) / BLOCK;
    parallel(N * nb, threads, [&](int, int64_t begin, int64_t end) {
        std::vector<T> pbuf(C * BLOCK);
        int32_t tt[BLOCK];
        for (int64_t it = begin; it < end; ++it) {
            const int64_t n = it / nb;
            const int64_t j0 = (it % nb) * BLOCK;
            const int64_t L = std::min<int64_t>(BLOCK, M - j0);
            const T* xb = x + n * C * M + j0;
            T* gb = grad + n * C * M + j0;
            const int64_t* tb = t + n * M + j0;
            for (int64_t j = 0; j < L; ++j) tt[j] = static_cast<int32_t>(tb[j]);
            const T* lb = lse + n * M + j0;
            const T* kb = kpix != nullptr ? kpix + n * M + j0 : nullptr;
            const T* vb = valid != nullptr ? valid + n * M + j0 : nullptr;
            if (need_stats) {
                const T* gp = g_psum + n * C;
                const T* gt = g_tp + n * C;
                T* pb = pbuf.data();
                if (vb != nullptr) {
                    if (kb != nullptr)
                        softmax_index_bwd_block<true, true>(xb, tt, vb, lb, kb, gt, gp, C, M, L, pb, gb);
                    else
                        softmax_index_bwd_block<true, false>(xb, tt, vb, lb, kb, gt, gp, C, M, L, pb, gb);
                } else {
                    if (kb != nullptr)
                        softmax_index_bwd_block<false, true>(xb, tt, vb, lb, kb, gt, gp, C, M, L, pb, gb);
                    else
                        softmax_index_bwd_block<false, false>(xb, tt, vb, lb, kb, gt, gp, C, M, L, pb, gb);
                }
            } else {
                for (int64_t c = 0; c < C; ++c) {
                    const T* xc = xb + c * M;
                    T* oc = gb + c * M;
                    const int32_t cc = static_cast<int32_t>(c);
                    for (int64_t j = 0; j < L; ++j) {
                        const T p = exp_neg(xc[j] - lb[j]);
                        oc[j] = (tt[j] == cc ? T(1) - p : -p) * kb[j];
                    }
                }
            }
        }
    }, N * C * M);
}

template <typename T>
int small_int(T gamma) {
    for (int k = 0; k <= 3; ++k)
        if (gamma == T(k)) return k;
    return -1;
}

// expm1(l) for l <= 0, float32 to a few ulp, vectorisable: the Taylor series to l^9 above -0.5 (remainder below
// 3e-10), exp(l) - 1 below (|result| > 0.39 there: the subtraction loses under 2 bits). NaN stays NaN.
SL_INLINE float expm1_neg(float l) {
    float p = 2.7557319e-6f;  // 1 / 9!
    p = std::fma(p, l, 2.4801587e-5f);
    p = std::fma(p, l, 1.9841270e-4f);
    p = std::fma(p, l, 1.3888889e-3f);
    p = std::fma(p, l, 8.3333333e-3f);
    p = std::fma(p, l, 4.1666667e-2f);
    p = std::fma(p, l, 1.6666667e-1f);
    p = std::fma(p, l, 0.5f);
    const float series = std::fma(p * l, l, l);
    const float big = exp_neg(l) - 1.0f;
    return l > -0.5f ? series : big;
}
SL_INLINE double expm1_neg(double l) { return std::expm1(l); }

// log(q) for q in (0, 1], also subnormal q (scaled by 2^64 first), vectorisable.
SL_INLINE float log_unit(float q) {
    const bool tiny = q < 1.17549435e-38f;
    const float l = log_1to2(tiny ? q * 18446744073709551616.0f : q);
    return tiny ? l - 44.3614195558365f : l;  // 64 ln 2
}
SL_INLINE double log_unit(double q) { return std::log(q); }

// The softmax focal term of each pixel from l = log p_t (seglosses._fused._focal_terms, same formulas):
// q = 1 - p_t = -expm1(l), value f = -q^gamma l, derivative f'(l) = (gamma e^l (l / q) - 1) q^gamma, with
// l / q = -1 - q / 2 - q^2 / 3 below q = 1e-4. In place: ld holds l on entry and w f'(l) on return (w the pixel
// weight, or 1); value[n] = sum over the image's pixels of w f. IG: gamma as a small integer (products) or -1.
template <typename T, int IG>
void focal_terms_ig(T* __restrict ld, const T* __restrict w, int64_t N, int64_t M, T gamma, double* value,
                    int threads) {
    const int64_t nb = (M + BLOCK - 1) / BLOCK;
    const int64_t items = N * nb;
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, items));
    std::vector<double> acc(nt * N, 0.0);
    parallel(items, static_cast<int>(nt), [&](int th, int64_t begin, int64_t end) {
        T fb[BLOCK], qb[BLOCK], eb[BLOCK];
        for (int64_t it = begin; it < end; ++it) {
            const int64_t n = it / nb;
            const int64_t j0 = (it % nb) * BLOCK;
            const int64_t L = std::min<int64_t>(BLOCK, M - j0);
            T* __restrict lb = ld + n * M + j0;
            if constexpr (IG == 0) {
                for (int64_t j = 0; j < L; ++j) {
                    fb[j] = -lb[j];
                    lb[j] = T(-1);
                }
            } else {
                // (in steps, each its own vectorised loop: in one loop gcc turned the selects into branches)
                for (int64_t j = 0; j < L; ++j) {
                    eb[j] = exp_neg(lb[j]);     // p_t
                    qb[j] = -expm1_neg(lb[j]);  // q = 1 - p_t
                }
                T gb[BLOCK];  // q^gamma
                if constexpr (IG > 0) {
                    for (int64_t j = 0; j < L; ++j) gb[j] = pow_unit<IG>(qb[j], T(0), gamma);
                } else {
                    for (int64_t j = 0; j < L; ++j) gb[j] = log_unit(qb[j] > T(0) ? qb[j] : T(1));
                    for (int64_t j = 0; j < L; ++j) {
                        const T q = qb[j], pw = exp_neg(gamma * gb[j]);
                        gb[j] = q > T(0) ? pw : (q == T(0) ? T(0) : q);  // 0^gamma = 0; NaN stays
                    }
                }
                for (int64_t j = 0; j < L; ++j) {
                    const T l = lb[j], q = qb[j], qg = gb[j];
                    const T series = (q * T(-1.0 / 3.0) - T(0.5)) * q - T(1);
                    const T ratio = q < T(1e-4) ? series : l / (q > T(1e-30) ? q : T(1e-30));  // l / q
                    fb[j] = -(qg * l);
                    lb[j] = (ratio * eb[j] * gamma - T(1)) * qg;
                }
            }
            if (w != nullptr) {  // (a loop of its own: inside the one above gcc would mask the loads of a null w)
                const T* __restrict wb = w + n * M + j0;
                for (int64_t j = 0; j < L; ++j) lb[j] *= wb[j];
                acc[th * N + n] += block_dot(fb, wb, L);
            } else {
                acc[th * N + n] += block_sum(fb, L);
            }
        }
    }, N * M);
    reduce_into(acc, nt, N, value);
}

template <typename T>
void focal_terms(T* ld, const T* w, int64_t N, int64_t M, T gamma, double* value, int threads) {
    switch (small_int(gamma)) {
        case 0: focal_terms_ig<T, 0>(ld, w, N, M, gamma, value, threads); break;
        case 1: focal_terms_ig<T, 1>(ld, w, N, M, gamma, value, threads); break;
        case 2: focal_terms_ig<T, 2>(ld, w, N, M, gamma, value, threads); break;
        case 3: focal_terms_ig<T, 3>(ld, w, N, M, gamma, value, threads); break;
        default: focal_terms_ig<T, -1>(ld, w, N, M, gamma, value, threads); break;
    }
}

// Binary/multilabel focal loss per element, with a = log p = logsigmoid(x), b = log(1 - p) = a - x:
// L = -[w1 g (1-p)^gamma a + w0 (1-g) p^gamma b]   (gamma = 0, w1 = w0 = 1: binary cross entropy), and
// dL/dx = -[w1 g (1-p)^gamma ((1-p) - gamma p a) + w0 (1-g) p^gamma (gamma (1-p) b - p)].
// ig: gamma as a small integer (0..3) when it is one, else -1 (then powers by exp(gamma log)).
// One loop for the focal term of a block and, with STATS, the sigmoid statistics' part in the same pass:
// forward (GRAD false): out = L, pout = p; backward (GRAD true): out = ks dL/dx + STATS p (1 - p) (ap + g at).
template <typename T, bool GRAD, bool STATS, int IG, bool POS0>
inline void focal_block_ig(const T* __restrict x, const T* __restrict g, int64_t L, T w1, T w0, T gamma,
                           T* __restrict out, T* __restrict pout, T ks, T ap, T at) {
    for (int64_t j = 0; j < L; ++j) {
        const T xj = x[j];
        const T ax = xj < T(0) ? xj : -xj;  // -|x|
        const T e = exp_neg(ax);
        const T r = T(1) / (T(1) + e);
        const bool neg = xj < T(0);
        const T p = neg ? e * r : r;   // sigmoid(x), exact on both sides
        const T q = neg ? r : e * r;   // 1 - p
        if constexpr (GRAD && IG == 0) {
            // gamma = 0 (binary cross entropy, weighted): dL/dx = w0 (1 - g) p - w1 g (1 - p), no logarithm
            const T gj = g[j];
            const T d = w0 * (T(1) - gj) * p - w1 * gj * q;
            if constexpr (STATS) {
                out[j] = ks * d + p * q * (ap + gj * at);
            } else {
                out[j] = d;
            }
            continue;
        }
        const T lp = log1p_unit(e);
        const T a = (neg ? xj : T(0)) - lp;   // log p
        const T b = (neg ? T(0) : -xj) - lp;  // log (1 - p)
        const T mq = POS0 ? T(1) : pow_unit<IG>(q, b, gamma);  // POS0: the positive term without modulation
        const T mp = pow_unit<IG>(p, a, gamma);
        const T gp = POS0 ? T(0) : gamma;
        const T gj = g[j];
        if constexpr (GRAD) {
            const T d = -(w1 * gj * mq * (q - gp * p * a) + w0 * (T(1) - gj) * mp * (gamma * q * b - p));
            if constexpr (STATS) {
                out[j] = ks * d + p * q * (ap + gj * at);
            } else {
                out[j] = d;
            }
        } else {
            out[j] = -(w1 * gj * mq * a + w0 * (T(1) - gj) * mp * b);
            if constexpr (STATS) pout[j] = p;
        }
    }
}

// ig: gamma as a small integer (0..3) or -1; pos0: the positive term's exponent is 0 instead of gamma (the
// asymmetric focal loss of Yeung et al.: no modulation of the rare class).
template <typename T, bool GRAD, bool STATS = false>
inline void focal_block(const T* __restrict x, const T* __restrict g, int64_t L, T w1, T w0, T gamma, int ig,
                        T* __restrict out, T* __restrict pout = nullptr, T ks = T(0), T ap = T(0), T at = T(0),
                        bool pos0 = false) {
#define SL_FOCAL_CASE(K)                                                                          \
    if (pos0)                                                                                     \
        focal_block_ig<T, GRAD, STATS, K, true>(x, g, L, w1, w0, gamma, out, pout, ks, ap, at);  \
    else                                                                                          \
        focal_block_ig<T, GRAD, STATS, K, false>(x, g, L, w1, w0, gamma, out, pout, ks, ap, at); \
    break;
    switch (ig) {
        case 0: SL_FOCAL_CASE(0)
        case 1: SL_FOCAL_CASE(1)
        case 2: SL_FOCAL_CASE(2)
        case 3: SL_FOCAL_CASE(3)
        default: SL_FOCAL_CASE(-1)
    }
#undef SL_FOCAL_CASE
}

// Per row of x (rows of M): the sum of v L (see focal_block).
template <typename T>
void sigmoid_focal_fwd(const T* __restrict x, const T* __restrict g, const T* __restrict valid, int64_t rows,
                       int64_t M, T w1, T w0, T gamma, double* total, int threads) {
    const int64_t nb = (M + BLOCK - 1) / BLOCK;
    const int64_t items = rows * nb;
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, items));
    const int ig = small_int(gamma);
    std::vector<double> acc(nt * rows, 0.0);
    parallel(items, static_cast<int>(nt), [&](int th, int64_t begin, int64_t end) {
        T buf[BLOCK];
        for (int64_t it = begin; it < end; ++it) {
            const int64_t r = it / nb;
            const int64_t j0 = (it % nb) * BLOCK;
            const int64_t L = std::min<int64_t>(BLOCK, M - j0);
            focal_block<T, false>(x + r * M + j0, g + r * M + j0, L, w1, w0, gamma, ig, buf);
            acc[th * rows + r] += valid != nullptr ? block_dot(buf, valid + r * M + j0, L) : block_sum(buf, L);
        }
    }, rows * M);
    reduce_into(acc, nt, rows, total);
}

// dx = scale_row v dL/dx.
template <typename T>
void sigmoid_focal_bwd(const T* __restrict x, const T* __restrict g, const T* __restrict valid,
                       const T* __restrict scale, int64_t rows, int64_t M, T w1, T w0, T gamma, T* __restrict grad,
                       int threads) {
    const int64_t nb = (M + BLOCK - 1) / BLOCK;
    const int ig = small_int(gamma);
    parallel(rows * nb, threads, [&](int, int64_t begin, int64_t end) {
        for (int64_t it = begin; it < end; ++it) {
            const int64_t r = it / nb;
            const int64_t j0 = (it % nb) * BLOCK;
            const int64_t L = std::min<int64_t>(BLOCK, M - j0);
            T* ob = grad + r * M + j0;
            focal_block<T, true>(x + r * M + j0, g + r * M + j0, L, w1, w0, gamma, ig, ob);
            const T sc = scale[r];
            if (valid != nullptr) {
                const T* vb = valid + r * M + j0;
                for (int64_t j = 0; j < L; ++j) ob[j] *= sc * vb[j];
            } else {
                for (int64_t j = 0; j < L; ++j) ob[j] *= sc;
            }
        }
    }, rows * M);
}

// Sigmoid probability, exact on both sides (exp of a non-positive argument only).
template <typename T>
SL_INLINE T sigmoid_of(T x) {
    const T e = exp_neg(x < T(0) ? x : -x);
    const T r = T(1) / (T(1) + e);
    return x < T(0) ? e * r : r;
}

// The statistics of one block of L <= BLOCK elements in one vectorised loop (16 partial sums in T each):
// ps += sum v p, tp += sum v p g, gs += sum v g, with p = sigmoid(x).
template <bool HV, typename T>
SL_INLINE void sigmoid_stats_block(const T* __restrict xb, const T* __restrict gb, const T* __restrict vb, int64_t L,
                                   double* ps, double* tp, double* gs) {
    T sp[16] = {}, st[16] = {}, sg[16] = {};
    int64_t j = 0;
    for (; j + 16 <= L; j += 16) {
        for (int l = 0; l < 16; ++l) {
            const T v = HV ? vb[j + l] : T(1);
            const T p = HV ? sigmoid_of(xb[j + l]) * v : sigmoid_of(xb[j + l]);
            const T g = gb[j + l];
            sp[l] += p;
            st[l] += p * g;
            sg[l] += HV ? g * v : g;
        }
    }
    T a = T(0), b = T(0), c = T(0);
    for (; j < L; ++j) {
        const T v = HV ? vb[j] : T(1);
        const T p = HV ? sigmoid_of(xb[j]) * v : sigmoid_of(xb[j]);
        a += p;
        b += p * gb[j];
        c += HV ? gb[j] * v : gb[j];
    }
    for (int l = 0; l < 16; ++l) {
        a += sp[l];
        b += st[l];
        c += sg[l];
    }
    *ps += a;
    *tp += b;
    *gs += c;
}

// Per row (n, c) of x (N*C rows of M): psum = sum v p, tp = sum v p g, with p = sigmoid(x).
// With pix (not null), also the sum of v L of the focal term (w1, w0, gamma: see focal_block) per row.
template <typename T>
void sigmoid_dense_fwd(const T* __restrict x, const T* __restrict g, const T* __restrict valid, int64_t rows,
                       int64_t M, double* psum, double* tp, double* pix, double* gsum, T w1, T w0, T gamma,
                       int pos0, int threads) {
    const int64_t nb = (M + BLOCK - 1) / BLOCK;
    const int64_t items = rows * nb;
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, items));
    const int ig = small_int(gamma);
    std::vector<double> acc(nt * 4 * rows, 0.0);
    parallel(items, static_cast<int>(nt), [&](int th, int64_t begin, int64_t end) {
        double* a_ps = acc.data() + th * 4 * rows;
        double* a_tp = a_ps + rows;
        double* a_px = a_tp + rows;
        double* a_gs = a_px + rows;
        for (int64_t it = begin; it < end; ++it) {
            const int64_t r = it / nb;
            const int64_t j0 = (it % nb) * BLOCK;
            const int64_t L = std::min<int64_t>(BLOCK, M - j0);
            const T* xb = x + r * M + j0;
            const T* gb = g + r * M + j0;
            T pb[BLOCK], qb[BLOCK], fb[BLOCK];
            const T* vb = valid != nullptr ? valid + r * M + j0 : nullptr;
            if (pix == nullptr) {  // the statistics alone: one fused loop
                if (vb != nullptr)
                    sigmoid_stats_block<true>(xb, gb, vb, L, a_ps + r, a_tp + r, a_gs + r);
                else
                    sigmoid_stats_block<false>(xb, gb, vb, L, a_ps + r, a_tp + r, a_gs + r);
                continue;
            }
            focal_block<T, false, true>(xb, gb, L, w1, w0, gamma, ig, fb, pb, T(0), T(0), T(0), pos0 != 0);
            a_px[r] += vb != nullptr ? block_dot(fb, vb, L) : block_sum(fb, L);
            if (vb != nullptr) {
                for (int64_t j = 0; j < L; ++j) pb[j] *= vb[j];
            }
            for (int64_t j = 0; j < L; ++j) qb[j] = pb[j] * gb[j];
            a_ps[r] += block_sum(pb, L);
            a_tp[r] += block_sum(qb, L);
            a_gs[r] += vb != nullptr ? block_dot(gb, vb, L) : block_sum(gb, L);
        }
    }, rows * M);
    std::vector<double> part(nt * rows);
    double* outs[4] = {psum, tp, pix, gsum};
    for (int which = 0; which < 4; ++which) {
        double* out = outs[which];
        if (out == nullptr) continue;
        for (int64_t th = 0; th < nt; ++th)
            std::memcpy(part.data() + th * rows, acc.data() + th * 4 * rows + which * rows, rows * sizeof(double));
        reduce_into(part, nt, rows, out);
    }
}

// dx = v [p (1 - p) (g_psum_r + g g_tp_r) + kscale_r dL/dx]  (the focal part only with kscale not null).
template <typename T>
void sigmoid_dense_bwd(const T* __restrict x, const T* __restrict g, const T* __restrict valid,
                       const T* __restrict g_tp, const T* __restrict g_psum, const T* __restrict kscale, T w1, T w0,
                       T gamma, int pos0, int64_t rows, int64_t M, T* __restrict grad, int threads) {
    const int64_t nb = (M + BLOCK - 1) / BLOCK;
    const int ig = small_int(gamma);
    parallel(rows * nb, threads, [&](int, int64_t begin, int64_t end) {
        for (int64_t it = begin; it < end; ++it) {
            const int64_t r = it / nb;
            const int64_t j0 = (it % nb) * BLOCK;
            const int64_t L = std::min<int64_t>(BLOCK, M - j0);
            const T* xb = x + r * M + j0;
            const T* gb = g + r * M + j0;
            T* ob = grad + r * M + j0;
            const T a = g_psum[r], bt = g_tp[r];
            if (kscale != nullptr) {
                focal_block<T, true, true>(xb, gb, L, w1, w0, gamma, ig, ob, nullptr, kscale[r], a, bt, pos0 != 0);
            } else {
                for (int64_t j = 0; j < L; ++j) {
                    const T p = sigmoid_of(xb[j]);
                    ob[j] = p * (T(1) - p) * (a + gb[j] * bt);
                }
            }
            if (valid != nullptr) {
                const T* vb = valid + r * M + j0;
                for (int64_t j = 0; j < L; ++j) ob[j] *= vb[j];
            }
        }
    }, rows * M);
}


// ---------------------------------------------------------------------------------------------------------------
// Lovasz: per row (a class of the batch, or of one image), sort the errors in decreasing order, weight rank k by
// J_k - J_{k-1} (Berman et al. Alg. 1) and return sum_k w_k e_(k), and W = (1 - 2g) w at every element's position
// (the derivative of the row's value w.r.t. z, where e = g + (1 - 2g) z for the flat form and e = 1 - (2g - 1) z
// for the hinge: both slopes are 1 - 2g). Elements that cannot move the value are left out of the sort and get
// W = 0: ignored ones, and for the hinge the inactive ones (e <= 0, they sort after every active error).
// Every element first gets a 32-bit key word at its own position of W, (n C + c) M + m: the float bits of its
// error (>= 0, so they order like the floats) with the target bit on top, or LV_EXCL outside the sort. The sort:
// radix sort of the key words, the top digit first, then each bucket in the cache (see lovasz_row). Equal errors
// give the same value in any order; their weights (the gradient) follow the position order (a stable sort).

constexpr uint32_t LV_EXCL = 0xFFFFFFFFu;  // the key word of an element outside the sort

// The key word of an error e >= 0 (or NaN) with target bit g: its float bits, clamped to key_max (a NaN error
// sorts first; the caller makes the row's value NaN), | g << 31.
SL_INLINE uint32_t lovasz_key(float e, uint32_t g, uint32_t key_max) {
    uint32_t bits;
    std::memcpy(&bits, &e, 4);
    return (bits < key_max ? bits : key_max) | (g << 31);
}

// The sort keys use 30 significant bits for errors <= 1 (softmax and flat form), 31 for the hinge's.
SL_INLINE uint32_t lovasz_key_max(int hinge) { return hinge ? 0x7FFFFFFFu : 0x3FFFFFFFu; }

struct LovaszRow {
    int64_t n0, c, nseg;  // first image, class, number of images in the row
};

// kind 0: softmax of logits z (N, C, M) with index target t (N, M), valid (N, M) or null; lse (N, M) written by
// lovasz_softmax_keys. kind 1: dense z (N, C, M) (probabilities, or logits for the hinge), target g (N, C, M) 0/1,
// valid (N, C, M) or null.
struct LovaszInput {
    int kind, hinge;
    const float* z;
    float* lse;
    const int64_t* t;
    const float* g;
    const float* valid;
    int64_t N, C, M;
};

// Key words of every element of a softmax input (kind 0), all classes in one pass over the pixels: the error is
// 1 - p for the target class and p for the others (p the softmax, e^{x - max} / sum), LV_EXCL on ignored pixels.
// Writes lse (N, M) for the backward; per image and class (N C): pos, the kept pixels of that class, and nan, an
// error is NaN (on ignored pixels too, as the PyTorch path's 0 * NaN). Returns 1 if an index is outside [0, C).
int lovasz_softmax_keys(const LovaszInput& in, uint32_t* __restrict keys, std::vector<int64_t>& pos,
                        std::vector<uint8_t>& nan, int threads) {
    const int64_t N = in.N, C = in.C, M = in.M;
    const int64_t nb = (M + BLOCK - 1) / BLOCK;
    const int64_t items = N * nb;
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, items));
    const uint32_t key_max = lovasz_key_max(0);
    std::vector<int64_t> pos_t(static_cast<size_t>(nt * N * C), 0);
    std::vector<uint8_t> nan_t(static_cast<size_t>(nt * N * C), 0);
    std::vector<int> bad(nt, 0);
    parallel(items, static_cast<int>(nt), [&](int th, int64_t begin, int64_t end) {
        std::vector<float> ebuf(C * BLOCK);
        float mx[BLOCK], se[BLOCK], inv[BLOCK];
        int32_t tc[BLOCK];
        uint32_t out[BLOCK];
        for (int64_t it = begin; it < end; ++it) {
            const int64_t n = it / nb;
            const int64_t j0 = (it % nb) * BLOCK;
            const int64_t L = std::min<int64_t>(BLOCK, M - j0);
            const float* xb = in.z + n * C * M + j0;
            const int64_t* tb = in.t + n * M + j0;
            int out_of_range = 0;
            for (int64_t j = 0; j < L; ++j) out_of_range |= (tb[j] < 0) | (tb[j] >= C);
            if (out_of_range) {
                bad[th] = 1;
                return;
            }
            softmax_block(xb, C, M, L, mx, se, ebuf.data());
            float* lb = in.lse + n * M + j0;
            for (int64_t j = 0; j < L; ++j) lb[j] = log_of(se[j]) + mx[j];
            for (int64_t j = 0; j < L; ++j) inv[j] = 1.0f / se[j];
            const float* vb = in.valid == nullptr ? nullptr : in.valid + n * M + j0;
            // 32-bit lanes throughout (vectorised): the class index, and all ones outside the sort (ignored pixels)
            for (int64_t j = 0; j < L; ++j) tc[j] = static_cast<int32_t>(tb[j]);
            if (vb == nullptr) {
                for (int64_t j = 0; j < L; ++j) out[j] = 0u;
            } else {
                for (int64_t j = 0; j < L; ++j) out[j] = vb[j] > 0.0f ? 0u : LV_EXCL;
            }
            for (int64_t c = 0; c < C; ++c) {
                const float* eb = ebuf.data() + c * BLOCK;
                uint32_t* kb = keys + (n * C + c) * M + j0;
                uint32_t gs = 0, bn = 0;
                for (int64_t j = 0; j < L; ++j) {
                    const uint32_t g = tc[j] == c ? 1u : 0u;
                    const float p = eb[j] * inv[j];
                    const float v = g ? 1.0f - p : p;
                    const float e = v <= 0.0f ? 0.0f : v;  // p may pass 1 by an ulp; NaN stays
                    bn |= e != e ? 1u : 0u;
                    kb[j] = lovasz_key(e, g, key_max) | out[j];
                    gs += g & ~out[j];
                }
                pos_t[th * N * C + n * C + c] += gs;
                nan_t[th * N * C + n * C + c] |= bn != 0;
            }
        }
    }, N * C * M);
    for (int64_t th = 0; th < nt; ++th)
        if (bad[th]) return 1;
    pos.assign(static_cast<size_t>(N * C), 0);
    nan.assign(static_cast<size_t>(N * C), 0);
    for (int64_t th = 0; th < nt; ++th)
        for (int64_t i = 0; i < N * C; ++i) {
            pos[i] += pos_t[th * N * C + i];
            nan[i] |= nan_t[th * N * C + i];
        }
    return 0;
}

// The key words kb of the elements zb[0:len] of a dense input (kind 1) with targets gp and (VALID) the mask vb, in
// one vectorised loop: the error |g - z| (flat form, a -0 probability gives +0) or 1 - (2g - 1) z (hinge), LV_EXCL
// outside the sort (ignored, and for the hinge e <= 0: an inactive hinge error sorts after every active one and
// has weight 0 in the value). Adds the kept positives to gs and sets bn if an error is NaN.
template <bool HINGE, bool VALID>
SL_INLINE void lovasz_dense_keys(const float* __restrict zb, const float* __restrict gp, const float* __restrict vb,
                                 int64_t len, uint32_t* __restrict kb, uint32_t& gs, uint32_t& bn) {
    const uint32_t key_max = lovasz_key_max(HINGE);
    uint32_t g_sum = 0, nan = 0;
    for (int64_t j = 0; j < len; ++j) {
        const uint32_t g = gp[j] > 0.5f ? 1u : 0u;
        const uint32_t kept = VALID ? (vb[j] > 0.0f ? 1u : 0u) : 1u;
        float e;
        uint32_t in_sort;
        if (HINGE) {
            e = g ? 1.0f - zb[j] : 1.0f + zb[j];
            in_sort = e > 0.0f ? kept : 0u;
        } else {
            const float v = g ? 1.0f - zb[j] : zb[j];
            e = v <= 0.0f ? 0.0f : v;  // NaN stays
            in_sort = kept;
        }
        nan |= e != e ? 1u : 0u;
        g_sum += kept & g;
        const uint32_t key = lovasz_key(e, g, key_max);  // (computed first: gcc then vectorises every variant)
        kb[j] = in_sort ? key : LV_EXCL;
    }
    gs += g_sum;
    bn |= nan;
}

// fn(off, len) over the elements [b, e) of a row (row index i = s M + m for image n0 + s), in blocks of at most
// BLOCK elements of one image: the block's elements are at [off, off + len) of an (N, C, M) array.
template <class Fn>
SL_INLINE void row_blocks(const LovaszRow& row, int64_t C, int64_t M, int64_t b, int64_t e, const Fn& fn) {
    int64_t s = b / M, m = b % M;
    for (int64_t i = b; i < e;) {
        const int64_t len = std::min<int64_t>(std::min<int64_t>(BLOCK, M - m), e - i);
        fn(((row.n0 + s) * C + row.c) * M + m, len);
        i += len;
        m += len;
        if (m == M) {
            m = 0;
            ++s;
        }
    }
}

// The two least-significant-digit passes of a bucket's sort: digit 0 is (v >> shift0) & m0, digit 1 is
// (v >> shift1) & m1; h0 and h1 hold each digit's exclusive prefix counts, and a pass whose digit is the same
// for every element (skip) leaves the order as it is. Stable; returns the buffer (from or to) with the result.
template <typename T>
SL_INLINE T* lsd_two_passes(T* from, T* to, int64_t n, uint32_t* h0, uint32_t* h1, int shift0, int shift1,
                            uint64_t m0, uint64_t m1, const bool* skip) {
    for (int pass = 0; pass < 2; ++pass) {
        if (skip[pass]) continue;
        uint32_t* h = pass == 0 ? h0 : h1;
        const int shift = pass == 0 ? shift0 : shift1;
        const T mask = static_cast<T>(pass == 0 ? m0 : m1);
        for (int64_t j = 0; j < n; ++j) {
            const T v = from[j];
            to[h[(v >> shift) & mask]++] = v;
        }
        std::swap(from, to);
    }
    return from;
}

// One row. W holds the key words at the elements' positions (n C + c) M + m (kind 1 writes the row's here; kind 0
// takes them from lovasz_softmax_keys, with the row's kept positives pos_in and NaN flag nan_in), and the weights
// at the same positions on return. P: L uint32 of scratch.
//
// The sort: one most-significant-digit pass on the top 12 key bits writes each element's entry (its low key bits
// and target bit) into one of 4096 buckets of P (stable: each chunk's offsets come from a histogram pass; the
// elements outside the sort go to a last bucket).
// Each bucket is then sorted by two least-significant-digit passes over words made of its low key bits and local
// index, in cache, and walked at once (the weights of a bucket's ranks need only the positives of the buckets above
// it, counted with the histogram): each entry becomes its element's weight. Buckets are shared among the threads
// in contiguous ranges of about equal size. The positions are never stored: a last pass repeats the scatter's pass
// over the key words and reads every weight back from the slot the scatter gave that element.
void lovasz_row(const LovaszInput& in, const LovaszRow& row, float* W, uint32_t* P, int threads, double& value,
                double& positives, int64_t pos_in, bool nan_in) {
    const int64_t C = in.C, M = in.M;
    const int64_t L = row.nseg * M;
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, (L + 65535) / 65536));
    uint32_t* keys = reinterpret_cast<uint32_t*>(W);
    const int key_bits = in.hinge ? 31 : 30;
    // 4096 buckets (softmax and flat form: errors in [0, 1], 32 buckets an octave), 16384 for the hinge: its
    // errors 1 - (2g - 1) z crowd into a few octaves around 1, and smaller buckets stay in the cache in D
    const int TOP = in.hinge ? 14 : 12;
    const int64_t NB = int64_t(1) << TOP;
    const int top_shift = key_bits - TOP;  // the low bits [0, top_shift): two digits of lo0 and lo1 bits
    const int lo0 = (top_shift + 1) / 2, lo1 = top_shift - lo0;
    const uint32_t low_mask = (uint32_t(1) << top_shift) - 1;
    // fn(off, len) over the blocks of chunk th of the row (nt chunks of about L / nt elements): the key words and
    // weights of a block are at [off, off + len)
    auto chunk_blocks = [&](int64_t th, const auto& fn) { row_blocks(row, C, M, L * th / nt, L * (th + 1) / nt, fn); };
    int64_t Gi = pos_in;
    bool any_nan = nan_in;
    if (in.kind == 1) {  // A: the key words of the row, its kept positives and NaN flag
        std::vector<int64_t> pos_count(nt, 0);
        std::vector<uint8_t> nan_seen(nt, 0);
        const auto keys_of = in.hinge ? (in.valid ? lovasz_dense_keys<true, true> : lovasz_dense_keys<true, false>)
                                      : (in.valid ? lovasz_dense_keys<false, true> : lovasz_dense_keys<false, false>);
        parallel(nt, static_cast<int>(nt), [&](int, int64_t tb, int64_t te) {
            for (int64_t th = tb; th < te; ++th) {
                int64_t gp = 0;
                bool nan = false;
                chunk_blocks(th, [&](int64_t off, int64_t len) {
                    uint32_t gs = 0, bn = 0;
                    keys_of(in.z + off, in.g + off, in.valid == nullptr ? nullptr : in.valid + off, len, keys + off,
                            gs, bn);
                    nan |= bn != 0;
                    gp += gs;
                });
                pos_count[th] = gp;
                nan_seen[th] = nan;
            }
        }, L);
        for (int64_t th = 0; th < nt; ++th) {
            Gi += pos_count[th];
            any_nan |= nan_seen[th] != 0;
        }
    }
    // The digit of a key word: its top key bits, or NB outside the sort (a last bucket, never sorted: the passes
    // over the key words need no test of their own for the elements outside the sort)
    auto digit = [top_shift, NB](uint32_t w) -> uint32_t {
        return w == LV_EXCL ? uint32_t(NB) : (w & 0x7FFFFFFFu) >> top_shift;
    };
    // The histogram's digits in a loop of their own over a block (vectorised: its branch would be mispredicted
    // wherever the elements outside the sort are scattered, e.g. the hinge's inactive ones).
    auto digits = [&digit](const uint32_t* __restrict kb, int64_t len, uint32_t* __restrict db) {
        for (int64_t j = 0; j < len; ++j) db[j] = digit(kb[j]);
    };
    // B: per chunk, the top-digit histogram (low half: count, high half: positives)
    const int64_t NH = NB + 1;
    std::vector<uint64_t> top_hist(static_cast<size_t>(nt * NH), 0u);
    parallel(nt, static_cast<int>(nt), [&](int, int64_t tb, int64_t te) {
        for (int64_t th = tb; th < te; ++th) {
            uint64_t* h = top_hist.data() + th * NH;
            uint32_t db[BLOCK];
            chunk_blocks(th, [&](int64_t off, int64_t len) {
                const uint32_t* kb = keys + off;
                digits(kb, len, db);
                for (int64_t j = 0; j < len; ++j) h[db[j]] += 1u | (static_cast<uint64_t>(kb[j] >> 31) << 32);
            });
        }
    }, L);
    // C: the top-digit pass: each element's entry (its low key bits << 1 | g; 0 outside the sort) into P, bucket d
    // at [bstart[d], bstart[d + 1]) (the elements outside the sort last, at [K, L)); the positions are not kept: E
    // gives each weight back to its element by the same pass over the key words
    std::vector<int64_t> bstart(NH + 1, 0), pos_above(NB, 0);
    std::vector<uint32_t> off(static_cast<size_t>(nt * NH));
    {
        int64_t run = 0;
        for (int64_t d = 0; d < NH; ++d) {
            bstart[d] = run;
            for (int64_t th = 0; th < nt; ++th) {
                off[th * NH + d] = static_cast<uint32_t>(run);
                run += static_cast<int64_t>(top_hist[th * NH + d] & 0xFFFFFFFFu);
            }
        }
        bstart[NH] = run;
        int64_t above = 0;  // positives in the buckets of larger errors (ranks before this bucket's)
        for (int64_t d = NB - 1; d >= 0; --d) {
            pos_above[d] = above;
            for (int64_t th = 0; th < nt; ++th) above += static_cast<int64_t>(top_hist[th * NH + d] >> 32);
        }
        parallel(nt, static_cast<int>(nt), [&](int, int64_t tb, int64_t te) {
            for (int64_t th = tb; th < te; ++th) {
                std::vector<uint32_t> o(off.begin() + th * NH, off.begin() + (th + 1) * NH);
                chunk_blocks(th, [&](int64_t off0, int64_t len) {
                    const uint32_t* kb = keys + off0;
                    for (int64_t j = 0; j < len; ++j) {
                        const uint32_t w = kb[j];
                        P[o[digit(w)]++] = w == LV_EXCL ? 0u : ((w & low_mask) << 1) | (w >> 31);
                    }
                });
            }
        }, L);
    }
    const int64_t K = bstart[NB];
    // D: per bucket, its sort (stable) on words made of the low key bits above the reversed local index n - 1 - j (so
    // that the walk from the largest word, the largest error first, meets equal errors in position order, as a
    // stable sort in decreasing order does: the PyTorch paths and Berman et al.'s reference), then the walk over
    // its ranks, which leaves each element's weight in its entry. Up to 2^(32 - top_shift) elements the words are
    // 32-bit and sit in two small per-thread arrays (in the L1/L2 cache), beyond that 64-bit (the low key bits in
    // the high half) in a per-thread vector.
    const int local_bits = 32 - top_shift;
    // Sorts the n words w (uint32_t or uint64_t; low key bits from bit `shift` up) through tmp; returns the buffer
    // with the result.
    auto sort_words = [&](auto* w, auto* tmp, int64_t n, int shift) {
        using T = std::remove_reference_t<decltype(*w)>;
        if (n <= 32) {  // insertion sort (the local index breaks ties: stable)
            for (int64_t j = 1; j < n; ++j) {
                const T v = w[j];
                int64_t q = j;
                for (; q > 0 && w[q - 1] > v; --q) w[q] = w[q - 1];
                w[q] = v;
            }
            return w;
        }
        uint32_t h0[1 << 10] = {}, h1[1 << 10] = {};
        const uint64_t m0 = (uint64_t(1) << lo0) - 1, m1 = (uint64_t(1) << lo1) - 1;
        for (int64_t j = 0; j < n; ++j) {
            const T k = w[j] >> shift;
            ++h0[k & m0];
            ++h1[(k >> lo0) & m1];
        }
        bool one[2] = {false, false};
        for (int pass = 0; pass < 2; ++pass) {
            uint32_t* h = pass == 0 ? h0 : h1;
            const int64_t size = int64_t(1) << (pass == 0 ? lo0 : lo1);
            for (int64_t q = 0; q < size && !one[pass]; ++q) one[pass] = h[q] == n;
            if (one[pass]) continue;  // every key has this digit: the order stays
            uint32_t run = 0;
            for (int64_t q = 0; q < size; ++q) {
                const uint32_t c = h[q];
                h[q] = run;
                run += c;
            }
        }
        return lsd_two_passes(w, tmp, n, h0, h1, shift, shift + lo0, m0, m1, one);
    };
    // The ranks of bucket d, its sorted words w (local index in the bits below `shift`): the word at sorted place
    // j has rank K - 1 - (bstart[d] + j). After rank k, with cum positives among ranks <= k: I_k = G - cum,
    // U_k = G + k + 1 - cum, and the weight J_k - J_{k-1} = I_{k-1} / U_{k-1} - I_k / U_k (Berman et al. Alg. 1;
    // I_{-1} / U_{-1} = 1) in closed form, without the cancellation of the difference: 1 / U_k for a positive (I
    // drops by one, U stays), I_k / (U_{k-1} U_k) for a negative (U grows by one; 1 if U_{k-1} = 0: the first rank
    // of a row without positives). In float32 (the weights' type): the counts exact up to 2^24, then three
    // roundings of the arithmetic, about 2e-7 relative; the value's sum is kept in double. The entry of each
    // element becomes the float bits of (1 - 2g) w.
    auto walk_bucket = [&](int64_t d, const auto* w, int shift) {
        const int64_t s = bstart[d], e = bstart[d + 1];
        uint32_t* Pb = P + s;
        const uint64_t lmask = (uint64_t(1) << shift) - 1;
        const uint32_t top = static_cast<uint32_t>(d) << top_shift;
        int64_t cum = pos_above[d];
        double acc = 0.0;
        float ub[BLOCK], ib[BLOCK];
        double wv[BLOCK], ev[BLOCK];
        uint32_t gv[BLOCK], iv[BLOCK];
        for (int64_t hi = e - s; hi > 0; hi -= BLOCK) {  // blocks of ranks: sorted place hi - 1 - q, rank K - s - hi + q
            const int64_t len = std::min<int64_t>(BLOCK, hi);
            const int64_t k0 = K - s - hi;
            for (int64_t q = 0; q < len; ++q) {  // the counts: a scalar prefix
                const uint64_t word = w[hi - 1 - q];
                const uint32_t j = static_cast<uint32_t>((e - s - 1) - static_cast<int64_t>(word & lmask));
                const uint32_t gbit = Pb[j] & 1u;
                cum += gbit;
                gv[q] = gbit;
                iv[q] = j;
                ub[q] = static_cast<float>(Gi + k0 + q + 1 - cum);
                ib[q] = static_cast<float>(Gi - cum);
                const uint32_t bits = top | static_cast<uint32_t>(word >> shift);
                float err;
                std::memcpy(&err, &bits, 4);
                ev[q] = static_cast<double>(err);
            }
            for (int64_t q = 0; q < len; ++q) {  // the weights, one division each: vectorised
                const float u = ub[q];
                const bool first = u <= 1.0f;
                const float num = gv[q] ? 1.0f : (first ? 1.0f : ib[q]);
                const float den = gv[q] ? u : (first ? 1.0f : u * (u - 1.0f));
                const float wt = num / den;
                wv[q] = static_cast<double>(wt);
                ub[q] = gv[q] ? -wt : wt;  // W = (1 - 2g) w
            }
            acc += block_dot(wv, ev, len);
            for (int64_t q = 0; q < len; ++q) std::memcpy(Pb + iv[q], ub + q, 4);
        }
        return acc;
    };
    // the threads' bucket ranges [dlo[th], dlo[th + 1]): contiguous, about K / nt elements each
    std::vector<int64_t> dlo(nt + 1, NB);
    dlo[0] = 0;
    for (int64_t th = 1, d = 0; th < nt; ++th) {
        while (d < NB && bstart[d + 1] <= K * th / nt) ++d;
        dlo[th] = d;
    }
    std::vector<double> partial(nt, 0.0);
    parallel(nt, static_cast<int>(nt), [&](int, int64_t tb, int64_t te) {
        std::vector<uint32_t> small(size_t(2) << local_bits);
        std::vector<uint64_t> big;
        for (int64_t th = tb; th < te; ++th) {
            double acc = 0.0;
            for (int64_t d = dlo[th + 1] - 1; d >= dlo[th]; --d) {
                const int64_t s = bstart[d], n = bstart[d + 1] - s;
                if (n == 0) continue;
                const uint32_t* Pb = P + s;
                if (n <= (int64_t(1) << local_bits)) {
                    uint32_t* wa = small.data();
                    for (int64_t j = 0; j < n; ++j)
                        wa[j] = ((Pb[j] >> 1) << local_bits) | static_cast<uint32_t>(n - 1 - j);
                    acc += walk_bucket(d, sort_words(wa, wa + (size_t(1) << local_bits), n, local_bits), local_bits);
                } else {
                    if (big.size() < static_cast<size_t>(2 * n)) big.resize(static_cast<size_t>(2 * n));
                    uint64_t* wa = big.data();
                    for (int64_t j = 0; j < n; ++j)
                        wa[j] = (static_cast<uint64_t>(Pb[j] >> 1) << 32) | static_cast<uint64_t>(n - 1 - j);
                    acc += walk_bucket(d, sort_words(wa, wa + n, n, 32), 32);
                }
            }
            partial[th] = acc;
        }
    }, L);
    // E: the weights to their elements: the pass of C again (same chunks, same offsets), reading the entries back
    // in the order C wrote them
    parallel(nt, static_cast<int>(nt), [&](int, int64_t tb, int64_t te) {
        for (int64_t th = tb; th < te; ++th) {
            std::vector<uint32_t> o(off.begin() + th * NH, off.begin() + (th + 1) * NH);
            chunk_blocks(th, [&](int64_t off0, int64_t len) {
                uint32_t* kb = keys + off0;
                for (int64_t j = 0; j < len; ++j) kb[j] = P[o[digit(kb[j])]++];  // outside the sort: 0, the bits of 0.0f
            });
        }
    }, L);
    value = 0.0;
    for (int64_t th = 0; th < nt; ++th) value += partial[th];
    if (any_nan) value = std::numeric_limits<double>::quiet_NaN();
    positives = static_cast<double>(Gi);
}

// dx_c = p_c (D_c - sum_k p_k D_k), D = gv[row] W: the Lovasz-softmax gradient through the softmax.
void lovasz_softmax_bwd(const float* __restrict x, const float* __restrict lse, const float* __restrict W,
                        const float* __restrict gv, int64_t N, int64_t C, int64_t M, int per_image,
                        float* __restrict grad, int threads) {
    const int64_t nb = (M + BLOCK - 1) / BLOCK;
    parallel(N * nb, threads, [&](int, int64_t begin, int64_t end) {
        std::vector<float> pbuf(C * BLOCK);
        float s[BLOCK];
        for (int64_t it = begin; it < end; ++it) {
            const int64_t n = it / nb;
            const int64_t j0 = (it % nb) * BLOCK;
            const int64_t L = std::min<int64_t>(BLOCK, M - j0);
            const float* lb = lse + n * M + j0;
            for (int64_t j = 0; j < L; ++j) s[j] = 0.0f;
            for (int64_t c = 0; c < C; ++c) {
                const int64_t off = (n * C + c) * M + j0;
                const float scale = gv[per_image ? n * C + c : c];
                float* pb = pbuf.data() + c * BLOCK;
                float* ob = grad + off;
                for (int64_t j = 0; j < L; ++j) {
                    const float p = exp_neg(x[off + j] - lb[j]);
                    const float d = scale * W[off + j];
                    pb[j] = p;
                    ob[j] = d;
                    s[j] += p * d;
                }
            }
            for (int64_t c = 0; c < C; ++c) {
                const float* pb = pbuf.data() + c * BLOCK;
                float* ob = grad + (n * C + c) * M + j0;
                for (int64_t j = 0; j < L; ++j) ob[j] = pb[j] * (ob[j] - s[j]);
            }
        }
    }, N * C * M);
}

// Number of values of g[0:n] other than 0, 1 and (if has_ignore) the ignore value; NaN counts. One vectorised
// read: the whole check of a hard 0/1 target (the caller builds the error message from the slow path).
template <typename T>
int64_t count_not_binary(const T* __restrict g, int64_t n, int has_ignore, T ignore, int threads) {
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, (n + (1 << 18) - 1) >> 18));
    std::vector<int64_t> part(chunks, 0);
    parallel(chunks, static_cast<int>(chunks), [&](int, int64_t cb, int64_t ce) {
        for (int64_t ch = cb; ch < ce; ++ch) {
            const int64_t b = n * ch / chunks, e = n * (ch + 1) / chunks;
            int64_t bad = 0;
            if (has_ignore) {
                for (int64_t i = b; i < e; ++i) bad += !((g[i] == T(0)) | (g[i] == T(1)) | (g[i] == ignore));
            } else {
                for (int64_t i = b; i < e; ++i) bad += !((g[i] == T(0)) | (g[i] == T(1)));
            }
            part[ch] = bad;
        }
    }, n);
    int64_t total = 0;
    for (int64_t v : part) total += v;
    return total;
}

// Exact Euclidean distance transform (Felzenszwalb & Huttenlocher 2012, "Distance transforms of sampled
// functions"): for every element of B independent masks of shape `shape` (ndim axes, row-major, spacing w_a
// along axis a), the distance to the nearest element whose mask is 0 (0 there), as scipy's
// distance_transform_edt(mask, sampling=spacing) of each mask. Separable: the squared distance along the last
// axis (two sweeps), then along every other axis the lower envelope of the parabolas f(j) + w^2 (x - j)^2.
// Lines of an axis never cross masks. An element with no 0 anywhere in its mask gets +inf.

// Lower envelope of the parabolas f[j] + w2 (x - j)^2 over the finite f[j] of a line of n values (in place;
// inv[k] = 1 / (2 w2 k) for 0 < k < n; v, g, z, d: scratch of n, n, n + 1 and n). A line without a finite value
// stays +inf. The intersections only decide which parabola is lowest (a rounding there picks one of two equal
// values); the distance itself is f[j] + w2 (x - j)^2 of the chosen j.
SL_INLINE void edt_line(double* __restrict f, int64_t n, double w2, const double* __restrict inv,
                        int64_t* __restrict v, double* __restrict g, double* __restrict z, double* __restrict d) {
    const double inf = std::numeric_limits<double>::infinity();
    int64_t k = -1;
    for (int64_t q = 0; q < n; ++q) {
        if (f[q] == inf) continue;
        const double fq = f[q] + w2 * static_cast<double>(q) * static_cast<double>(q);
        double s = -inf;
        while (k >= 0) {
            s = (fq - g[k]) * inv[q - v[k]];
            if (s > z[k]) break;
            --k;
        }
        ++k;
        v[k] = q;
        g[k] = fq;
        z[k] = k == 0 ? -inf : s;
        z[k + 1] = inf;
    }
    if (k < 0) return;
    int64_t j = 0;
    for (int64_t x = 0; x < n; ++x) {
        while (z[j + 1] < static_cast<double>(x)) ++j;
        const double dx = static_cast<double>(x - v[j]);
        d[x] = w2 * dx * dx + f[v[j]];
    }
    for (int64_t x = 0; x < n; ++x) f[x] = d[x];
}

void edt(const uint8_t* __restrict mask, const uint8_t* __restrict skip, double* __restrict out, int64_t B, int ndim,
         const int64_t* shape, const double* spacing, int threads) {
    const double inf = std::numeric_limits<double>::infinity();
    int64_t M = 1;
    for (int a = 0; a < ndim; ++a) M *= shape[a];
    if (B == 0 || M == 0) return;
    const int64_t L = shape[ndim - 1];
    const double wl2 = spacing[ndim - 1] * spacing[ndim - 1];
    const int64_t rows = B * (M / L);
    // last axis: squared distance to the nearest 0 of the row (two sweeps), +inf for a row without one
    parallel(rows, threads, [&](int, int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            double* o = out + r * L;
            if (skip != nullptr && skip[r / (M / L)]) {
                for (int64_t x = 0; x < L; ++x) o[x] = 0.0;
                continue;
            }
            const uint8_t* m = mask + r * L;
            int64_t last = -1;
            for (int64_t x = 0; x < L; ++x) {
                if (!m[x]) last = x;
                o[x] = last < 0 ? inf : static_cast<double>(x - last);
            }
            last = -1;
            for (int64_t x = L - 1; x >= 0; --x) {
                if (!m[x]) last = x;
                if (last >= 0) o[x] = std::min(o[x], static_cast<double>(last - x));
                o[x] = o[x] == inf ? inf : wl2 * o[x] * o[x];
            }
        }
    }, B * M);
    // every other axis: the lower envelope along lines of stride `inner`, TILE neighbouring lines at a time
    constexpr int64_t TILE = 16;
    int64_t inner = L;
    for (int a = ndim - 2; a >= 0; --a) {
        const int64_t n = shape[a];
        const int64_t outer = B * (M / (inner * n));  // lines of this axis: outer x inner
        const int64_t tiles_per = (inner + TILE - 1) / TILE;
        const int64_t per_mask = M / (inner * n);
        const double w2 = spacing[a] * spacing[a];
        parallel(outer * tiles_per, threads, [&](int, int64_t begin, int64_t end) {
            std::vector<double> buf(static_cast<size_t>(n * TILE)), line(n), d(n), z(n + 1), g(n), inv(n);
            std::vector<int64_t> v(n);
            for (int64_t i = 1; i < n; ++i) inv[i] = 1.0 / (2.0 * w2 * static_cast<double>(i));
            for (int64_t t = begin; t < end; ++t) {
                const int64_t o = t / tiles_per, i0 = (t % tiles_per) * TILE;
                if (skip != nullptr && skip[o / per_mask]) continue;  // zeros already
                const int64_t width = std::min(TILE, inner - i0);
                double* base = out + o * n * inner + i0;
                for (int64_t x = 0; x < n; ++x)
                    for (int64_t i = 0; i < width; ++i) buf[x * TILE + i] = base[x * inner + i];
                for (int64_t i = 0; i < width; ++i) {
                    for (int64_t x = 0; x < n; ++x) line[x] = buf[x * TILE + i];
                    edt_line(line.data(), n, w2, inv.data(), v.data(), g.data(), z.data(), d.data());
                    for (int64_t x = 0; x < n; ++x) buf[x * TILE + i] = line[x];
                }
                for (int64_t x = 0; x < n; ++x)
                    for (int64_t i = 0; i < width; ++i) base[x * inner + i] = buf[x * TILE + i];
            }
        }, B * M);
        inner *= n;
    }
    parallel(B, threads, [&](int, int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
            double* o = out + b * M;
            for (int64_t i = 0; i < M; ++i) o[i] = std::sqrt(o[i]);
        }
    }, B * M);
}

}  // namespace

extern "C" {

int sl_version() { return 11; }

// How parallel() runs a call that has more than one range: 0 adaptive (the default), 1 always on a team of
// threads, 2 always on the calling thread. The results are the same in all three (for tests and A/B timings).
void sl_set_threading(int mode) { g_force.store(mode, std::memory_order_relaxed); }

// Back-off periods started by this process so far, and whether calls run serially now (1) or on threads (0): the
// state of parallel()'s choice.
int64_t sl_contended_regions() { return g_contended.load(std::memory_order_relaxed); }
int sl_serial_now() { return now_ns() < g_serial_until.load(std::memory_order_relaxed) ? 1 : 0; }

int64_t sl_count_not_binary_f32(const float* g, int64_t n, int has_ignore, double ignore, int threads) {
    return count_not_binary<float>(g, n, has_ignore, static_cast<float>(ignore), threads);
}
int64_t sl_count_not_binary_f64(const double* g, int64_t n, int has_ignore, double ignore, int threads) {
    return count_not_binary<double>(g, n, has_ignore, ignore, threads);
}

// Exact EDT of B masks (uint8, 0 = feature) of shape `shape` (ndim axes) with `spacing`, float64 (see edt);
// the masks flagged in `skip` (B bytes, or null) get 0 everywhere.
void sl_edt(const uint8_t* mask, const uint8_t* skip, double* out, int64_t B, int ndim, const int64_t* shape,
            const double* spacing, int threads) {
    edt(mask, skip, out, B, ndim, shape, spacing, threads);
}

int sl_softmax_index_fwd_f32(const float* x, const int64_t* t, const float* v, int64_t N, int64_t C, int64_t M,
                             float* lse, float* logpt, double* psum, double* tp, double* gsum, int need_stats,
                             int threads) {
    return softmax_index_fwd<float>(x, t, v, N, C, M, lse, logpt, psum, tp, gsum, need_stats, threads);
}
int sl_softmax_index_fwd_f64(const double* x, const int64_t* t, const double* v, int64_t N, int64_t C, int64_t M,
                             double* lse, double* logpt, double* psum, double* tp, double* gsum, int need_stats,
                             int threads) {
    return softmax_index_fwd<double>(x, t, v, N, C, M, lse, logpt, psum, tp, gsum, need_stats, threads);
}
void sl_softmax_index_bwd_f32(const float* x, const int64_t* t, const float* v, const float* lse, const float* k,
                              const float* g_tp, const float* g_psum, int64_t N, int64_t C, int64_t M,
                              int need_stats, float* grad, int threads) {
    softmax_index_bwd<float>(x, t, v, lse, k, g_tp, g_psum, N, C, M, need_stats, grad, threads);
}
void sl_softmax_index_bwd_f64(const double* x, const int64_t* t, const double* v, const double* lse, const double* k,
                              const double* g_tp, const double* g_psum, int64_t N, int64_t C, int64_t M,
                              int need_stats, double* grad, int threads) {
    softmax_index_bwd<double>(x, t, v, lse, k, g_tp, g_psum, N, C, M, need_stats, grad, threads);
}
void sl_focal_terms_f32(float* ld, const float* w, int64_t N, int64_t M, double gamma, double* value, int threads) {
    focal_terms<float>(ld, w, N, M, static_cast<float>(gamma), value, threads);
}
void sl_focal_terms_f64(double* ld, const double* w, int64_t N, int64_t M, double gamma, double* value,
                        int threads) {
    focal_terms<double>(ld, w, N, M, gamma, value, threads);
}
void sl_sigmoid_dense_fwd_f32(const float* x, const float* g, const float* v, int64_t rows, int64_t M, double* psum,
                              double* tp, double* pix, double* gsum, double w1, double w0, double gamma, int pos0,
                              int threads) {
    sigmoid_dense_fwd<float>(x, g, v, rows, M, psum, tp, pix, gsum, float(w1), float(w0), float(gamma), pos0,
                             threads);
}
void sl_sigmoid_dense_fwd_f64(const double* x, const double* g, const double* v, int64_t rows, int64_t M,
                              double* psum, double* tp, double* pix, double* gsum, double w1, double w0, double gamma,
                              int pos0, int threads) {
    sigmoid_dense_fwd<double>(x, g, v, rows, M, psum, tp, pix, gsum, w1, w0, gamma, pos0, threads);
}
void sl_sigmoid_dense_bwd_f32(const float* x, const float* g, const float* v, const float* g_tp, const float* g_psum,
                              const float* kscale, double w1, double w0, double gamma, int pos0, int64_t rows,
                              int64_t M, float* grad, int threads) {
    sigmoid_dense_bwd<float>(x, g, v, g_tp, g_psum, kscale, float(w1), float(w0), float(gamma), pos0, rows, M, grad,
                             threads);
}
void sl_sigmoid_dense_bwd_f64(const double* x, const double* g, const double* v, const double* g_tp,
                              const double* g_psum, const double* kscale, double w1, double w0, double gamma,
                              int pos0, int64_t rows, int64_t M, double* grad, int threads) {
    sigmoid_dense_bwd<double>(x, g, v, g_tp, g_psum, kscale, w1, w0, gamma, pos0, rows, M, grad, threads);
}

void sl_sigmoid_focal_fwd_f32(const float* x, const float* g, const float* v, int64_t rows, int64_t M, double w1,
                              double w0, double gamma, double* total, int threads) {
    sigmoid_focal_fwd<float>(x, g, v, rows, M, float(w1), float(w0), float(gamma), total, threads);
}
void sl_sigmoid_focal_fwd_f64(const double* x, const double* g, const double* v, int64_t rows, int64_t M,
                              double w1, double w0, double gamma, double* total, int threads) {
    sigmoid_focal_fwd<double>(x, g, v, rows, M, w1, w0, gamma, total, threads);
}
void sl_sigmoid_focal_bwd_f32(const float* x, const float* g, const float* v, const float* scale, int64_t rows,
                              int64_t M, double w1, double w0, double gamma, float* grad, int threads) {
    sigmoid_focal_bwd<float>(x, g, v, scale, rows, M, float(w1), float(w0), float(gamma), grad, threads);
}
void sl_sigmoid_focal_bwd_f64(const double* x, const double* g, const double* v, const double* scale, int64_t rows,
                              int64_t M, double w1, double w0, double gamma, double* grad, int threads) {
    sigmoid_focal_bwd<double>(x, g, v, scale, rows, M, w1, w0, gamma, grad, threads);
}

// Lovasz rows (see lovasz_row): value and positives per row (R = N C per image, else C), W (N, C, M), and for
// kind 0 lse (N, M). scratch: L uint32 (L the row length) per thread with row_parallel (rows spread over the
// threads), else L (each row over all threads). Returns 1 if N C M >= 2^31 (positions need 31 bits), 2 if an
// index is outside [0, C) (kind 0).
int sl_lovasz_fwd_f32(int kind, int hinge, const float* z, float* lse, const int64_t* t, const float* g,
                      const float* valid, int64_t N, int64_t C, int64_t M, int per_image, float* W, double* value,
                      double* positives, uint32_t* scratch, int row_parallel, int threads) {
    if (N * C * M >= (int64_t(1) << 31)) return 1;
    const int64_t L = per_image ? M : N * M;
    LovaszInput in{kind, hinge, z, lse, t, g, valid, N, C, M};
    std::vector<int64_t> pos;
    std::vector<uint8_t> nan;
    if (kind == 0 && lovasz_softmax_keys(in, reinterpret_cast<uint32_t*>(W), pos, nan, threads) != 0) return 2;
    const int64_t R = per_image ? N * C : C;
    auto run = [&](int64_t r, uint32_t* P, int nt) {
        const LovaszRow row = per_image ? LovaszRow{r / C, r % C, 1} : LovaszRow{0, r, N};
        int64_t p = 0;
        bool bad = false;
        if (kind == 0)
            for (int64_t s = 0; s < row.nseg; ++s) {
                p += pos[(row.n0 + s) * C + row.c];
                bad |= nan[(row.n0 + s) * C + row.c] != 0;
            }
        lovasz_row(in, row, W, P, nt, value[r], positives[r], p, bad);
    };
    if (row_parallel) {  // short rows: one row per thread at a time, each with its own scratch
        parallel(R, threads, [&](int th, int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) run(r, scratch + L * th, 1);
        }, R * L);
    } else {  // long rows: one at a time, every thread on it
        for (int64_t r = 0; r < R; ++r) run(r, scratch, threads);
    }
    return 0;
}
void sl_lovasz_softmax_bwd_f32(const float* x, const float* lse, const float* W, const float* gv, int64_t N, int64_t C,
                               int64_t M, int per_image, float* grad, int threads) {
    lovasz_softmax_bwd(x, lse, W, gv, N, C, M, per_image, grad, threads);
}

}  // extern "C"
