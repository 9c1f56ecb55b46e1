// The scans of seqexp's recurrences linear in their state, forward and backward, for
// seqexp/kernels/compiled.py: the time loop in C++, every element-wise step fused into it.
// Each (example, unit) of such a recurrence is independent of every other, so the threads (torch's
// OpenMP ones) split the batch, or the state, once, and each runs its share of the whole loop.
//
//   scan       h<t> = λ<t> ⊙ h<t-1> + β<t>, real or complex; λ may be constant over time
//              and over the batch (its strides say so), and its gradient is summed to its shape
//   mingru     z = σ(k_z), h̃ = g(k_h),  h<t> = (1 − z) ⊙ h<t-1> + z ⊙ h̃
//   minlstm    f = σ(k_f), i = σ(k_i), h̃ = g(k_h),  h<t> = f/(f+i) ⊙ h<t-1> + i/(f+i) ⊙ h̃
//   selective  h<t>[n] = exp(Δ<t> A[n]) h<t-1>[n] + Δ<t> u<t> B<t>[n],  y<t> = Σ_n C<t>[n] h<t>[n]
//              per channel (Mamba's S6): the (T, B, D, N) states are never stored; the backward
//              pass runs a block of channels forward again into a buffer of (T + 1) × block × N
//
// with g(x) = x + 1/2 for x ≥ 0 and σ(x) below (minGRU's). Layouts, row-major and contiguous:
// k (T, B, 2n) as [k_z | k_h], (T, B, 3n) as [k_f | k_i | k_h]; h (T, B, n) and h<0> (B, n); for
// selective u and Δ (T, B, D), B and C (T, B, N), A (D, N), h<0> and h<T> (B, D, N). Gradients
// have their tensor's layout, but selective's dA, which is (B, D, N): each thread owns its examples
// and writes only theirs. Nothing here throws or allocates but the backward's per-thread buffers.
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using index = std::int64_t;

// σ(z) = (1 + tanh(z / 2)) / 2: saturates cleanly, where 1 / (1 + exp(−z)) under -ffast-math
// turns exp's overflow into NaN.
template <typename F>
inline F sigmoid(F z) {
  return F(0.5) + F(0.5) * std::tanh(F(0.5) * z);
}

template <typename F>
inline F g(F x) {
  return x >= F(0) ? x + F(0.5) : sigmoid(x);
}

template <typename F>
inline F g_slope(F x) {
  const F s = sigmoid(x);
  return x >= F(0) ? F(1) : s * (F(1) - s);
}

template <typename F>
inline F conjugate(F x) {
  return x;
}

template <typename F>
inline std::complex<F> conjugate(std::complex<F> x) {
  return std::conj(x);
}

// The share [first, last) of `count` items of this thread.
inline void share(index count, index& first, index& last) {
#ifdef _OPENMP
  const index threads = omp_get_num_threads(), thread = omp_get_thread_num();
#else
  const index threads = 1, thread = 0;
#endif
  const index size = (count + threads - 1) / threads;
  first = std::min(count, thread * size);
  last = std::min(count, first + size);
}

// λ's offset at (t, b, s), given its strides over time and batch (0 where it is constant).
struct Coefficient {
  index time_stride, batch_stride;
  index at(index t, index b, index s) const { return t * time_stride + b * batch_stride + s; }
};

// h<t> = λ<t> ⊙ h<t-1> + β<t> over (T, B, S); each thread owns a slice of the state.
template <typename V>
void scan_forward(index T, index B, index S, Coefficient lam_at, const V* __restrict__ lam,
                  const V* __restrict__ beta, const V* __restrict__ h0, V* __restrict__ h) {
#pragma omp parallel
  {
    index first, last;
    share(S, first, last);
    for (index t = 0; t < T; ++t)
      for (index b = 0; b < B; ++b) {
        const V* previous = t ? h + ((t - 1) * B + b) * S : h0 + b * S;
        const V* l = lam + lam_at.at(t, b, 0);
        const V* add = beta + (t * B + b) * S;
        V* out = h + (t * B + b) * S;
        for (index s = first; s < last; ++s) out[s] = l[s] * previous[s] + add[s];
      }
  }
}

// g<t> = ∂L/∂h<t> + conj(λ<t+1>) ⊙ g<t+1> (into d_beta), ∂L/∂λ<t> = g<t> ⊙ conj(h<t-1>) summed
// over the times and examples λ is constant over, ∂L/∂h<0> = conj(λ<1>) ⊙ g<1>.
template <typename V>
void scan_backward(index T, index B, index S, Coefficient lam_at, const V* __restrict__ lam,
                   const V* __restrict__ h0, const V* __restrict__ h, const V* __restrict__ d_h,
                   V* __restrict__ d_beta, V* __restrict__ d_lam, V* __restrict__ d_h0) {
#pragma omp parallel
  {
    index first, last;
    share(S, first, last);
    for (index t = T - 1; t >= 0; --t)
      for (index b = 0; b < B; ++b) {
        const index row = (t * B + b) * S;
        const V* later = t + 1 < T ? lam + lam_at.at(t + 1, b, 0) : nullptr;
        const V* previous = t ? h + row - B * S : h0 + b * S;
        V* dl = d_lam + lam_at.at(t, b, 0);
        for (index s = first; s < last; ++s) {
          V grad = d_h[row + s];
          if (later) grad += conjugate(later[s]) * d_beta[row + B * S + s];
          d_beta[row + s] = grad;
          dl[s] += grad * conjugate(previous[s]);
        }
      }
    for (index b = 0; b < B; ++b) {
      const V* l = lam + lam_at.at(0, b, 0);
      for (index s = first; s < last; ++s)
        d_h0[b * S + s] = T ? conjugate(l[s]) * d_beta[b * S + s] : V(0);
    }
  }
}

// The element-wise gates of minGRU and minLSTM, at unit j of one row of pre-activations k (its
// blocks n apart): the coefficients λ, β of h<t> = λ h<t-1> + β; and, given g = ∂L/∂h<t> and
// h<t-1>, the pre-activations' gradients, returning λ (which carries g back a step).
template <typename F>
struct MinGRU {
  static constexpr int blocks = 2;
  static void coefficients(const F* __restrict__ k, index n, index j, F& lam, F& beta) {
    const F z = sigmoid(k[j]);
    lam = F(1) - z;
    beta = z * g(k[n + j]);
  }
  static F backward(const F* __restrict__ k, index n, index j, F previous, F grad,
                    F* __restrict__ dk) {
    const F z = sigmoid(k[j]), x = k[n + j], s = sigmoid(x);
    const F candidate = x >= F(0) ? x + F(0.5) : s, slope = x >= F(0) ? F(1) : s * (F(1) - s);
    dk[j] = grad * (candidate - previous) * z * (F(1) - z);
    dk[n + j] = grad * z * slope;
    return F(1) - z;
  }
};

template <typename F>
struct MinLSTM {
  static constexpr int blocks = 3;
  static void coefficients(const F* __restrict__ k, index n, index j, F& lam, F& beta) {
    const F f = sigmoid(k[j]), i = sigmoid(k[n + j]);
    lam = f / (f + i);
    beta = i / (f + i) * g(k[2 * n + j]);
  }
  static F backward(const F* __restrict__ k, index n, index j, F previous, F grad,
                    F* __restrict__ dk) {
    const F f = sigmoid(k[j]), i = sigmoid(k[n + j]), x = k[2 * n + j], s = sigmoid(x);
    const F candidate = x >= F(0) ? x + F(0.5) : s, slope = x >= F(0) ? F(1) : s * (F(1) - s);
    const F inverse = F(1) / (f + i);
    // ∂L/∂λ = g h<t-1>, ∂L/∂(i/(f+i)) = g h̃; through λ = f/(f+i) and i/(f+i) to f and i:
    const F d_mix = grad * (previous - candidate) * inverse * inverse;
    dk[j] = i * d_mix * f * (F(1) - f);
    dk[n + j] = -f * d_mix * i * (F(1) - i);
    dk[2 * n + j] = grad * i * inverse * slope;
    return f * inverse;
  }
};

// A gated scan over (T, B, n) from pre-activations k (T, B, blocks × n); threads split the units.
template <typename Gates, typename F>
void gated_forward(index T, index B, index n, const F* __restrict__ k, const F* __restrict__ h0,
                   F* __restrict__ h) {
#pragma omp parallel
  {
    index first, last;
    share(n, first, last);
    for (index t = 0; t < T; ++t)
      for (index b = 0; b < B; ++b) {
        const F* row = k + (t * B + b) * Gates::blocks * n;
        const F* previous = t ? h + ((t - 1) * B + b) * n : h0 + b * n;
        F* out = h + (t * B + b) * n;
#pragma omp simd
        for (index j = first; j < last; ++j) {
          F lam, beta;
          Gates::coefficients(row, n, j, lam, beta);
          out[j] = lam * previous[j] + beta;
        }
      }
  }
}

// Its backward: g<t> = ∂L/∂h<t> + λ<t+1> g<t+1>, carried per unit in d_h0 as it steps back.
template <typename Gates, typename F>
void gated_backward(index T, index B, index n, const F* __restrict__ k, const F* __restrict__ h0,
                    const F* __restrict__ h, const F* __restrict__ d_h, F* __restrict__ dk,
                    F* __restrict__ d_h0) {
#pragma omp parallel
  {
    index first, last;
    share(n, first, last);
    for (index b = 0; b < B; ++b)
      for (index j = first; j < last; ++j) d_h0[b * n + j] = F(0);
    for (index t = T - 1; t >= 0; --t)
      for (index b = 0; b < B; ++b) {
        const index row = t * B + b;
        const F* gates = k + row * Gates::blocks * n;
        const F* previous = t ? h + (row - B) * n : h0 + b * n;
        const F* given = d_h + row * n;
        F* d_gates = dk + row * Gates::blocks * n;
        F* carried = d_h0 + b * n;
#pragma omp simd
        for (index j = first; j < last; ++j) {
          const F grad = given[j] + carried[j];
          carried[j] = grad * Gates::backward(gates, n, j, previous[j], grad, d_gates);
        }
      }
  }
}

// S6 over (T, B, D) channels of N states each; threads split the examples. Each runs a block of
// `channel_block` channels at a time over the whole sequence, so that a step reads one cache line
// of u and Δ per block, not one per channel, and the block's states stay in the L1 cache.
constexpr index channel_block = 16;

// exp(Δ<t> A) for a block of `width` channels at once: one vector loop over all their states.
template <typename F>
void decay_block(index width, index N, const F* __restrict__ delta, const F* __restrict__ A,
                 F* __restrict__ decays) {
  for (index j = 0; j < width; ++j)
    for (index s = 0; s < N; ++s) decays[j * N + s] = delta[j] * A[j * N + s];
#pragma omp simd
  for (index i = 0; i < width * N; ++i) decays[i] = std::exp(decays[i]);
}

template <typename F>
void selective_forward(index T, index B, index D, index N, const F* __restrict__ u,
                       const F* __restrict__ dt, const F* __restrict__ A,
                       const F* __restrict__ Bm, const F* __restrict__ Cm,
                       const F* __restrict__ h0, F* __restrict__ y, F* __restrict__ hT) {
#pragma omp parallel
  {
    index first, last;
    share(B, first, last);
    std::vector<F> kept(channel_block * N), kept_decays(channel_block * N);
    F* __restrict__ state = kept.data();
    F* __restrict__ decays = kept_decays.data();
    for (index b = first; b < last; ++b)
      for (index d0 = 0; d0 < D; d0 += channel_block) {
        const index width = std::min(channel_block, D - d0);
        std::copy_n(h0 + (b * D + d0) * N, width * N, state);
        for (index t = 0; t < T; ++t) {
          const index channels = (t * B + b) * D + d0, row = (t * B + b) * N;
          decay_block(width, N, dt + channels, A + d0 * N, decays);
          for (index j = 0; j < width; ++j) {
            const F input = dt[channels + j] * u[channels + j];
            const F* decay = decays + j * N;
            F* h = state + j * N;
            F out = F(0);
#pragma omp simd reduction(+ : out)
            for (index s = 0; s < N; ++s) {
              h[s] = decay[s] * h[s] + input * Bm[row + s];
              out += Cm[row + s] * h[s];
            }
            y[channels + j] = out;
          }
        }
        std::copy_n(state, width * N, hT + (b * D + d0) * N);
      }
  }
}

// Its backward, a block of channels at a time: the block's forward pass again, every state kept
// ((T + 1) × block × N), then back through time; exp(Δ A) is computed again rather than kept.
template <typename F>
void selective_backward(index T, index B, index D, index N, const F* __restrict__ u,
                        const F* __restrict__ dt, const F* __restrict__ A,
                        const F* __restrict__ Bm, const F* __restrict__ Cm,
                        const F* __restrict__ h0, const F* __restrict__ dy,
                        const F* __restrict__ d_hT, F* __restrict__ du, F* __restrict__ d_dt,
                        F* __restrict__ dA, F* __restrict__ dB, F* __restrict__ dC,
                        F* __restrict__ d_h0) {
#pragma omp parallel
  {
    index first, last;
    share(B, first, last);
    const index block = channel_block * N;
    std::vector<F> kept_states((T + 1) * block), kept_carried(block), kept_decays(block);
    std::vector<F> kept_d_B(N), kept_d_C(N);  // a step's ∂L/∂B<t>, ∂L/∂C<t> over the block
    F* __restrict__ d_B = kept_d_B.data();
    F* __restrict__ d_C = kept_d_C.data();
    F* __restrict__ states = kept_states.data();
    F* __restrict__ carried = kept_carried.data();
    F* __restrict__ decays = kept_decays.data();
    for (index b = first; b < last; ++b) {
      for (index t = 0; t < T; ++t)
        std::fill_n(dB + (t * B + b) * N, N, F(0)), std::fill_n(dC + (t * B + b) * N, N, F(0));
      for (index d0 = 0; d0 < D; d0 += channel_block) {
        const index width = std::min(channel_block, D - d0);
        const F* a_block = A + d0 * N;
        F* __restrict__ d_a = dA + (b * D + d0) * N;
        std::copy_n(h0 + (b * D + d0) * N, width * N, states);
        std::fill_n(d_a, width * N, F(0));
        for (index t = 0; t < T; ++t) {  // the forward pass again
          const index channels = (t * B + b) * D + d0, row = (t * B + b) * N;
          decay_block(width, N, dt + channels, a_block, decays);
          for (index j = 0; j < width; ++j) {
            const F input = dt[channels + j] * u[channels + j];
            const F* decay = decays + j * N;
            const F* previous = states + t * block + j * N;
            F* next = states + (t + 1) * block + j * N;
#pragma omp simd
            for (index s = 0; s < N; ++s) next[s] = decay[s] * previous[s] + input * Bm[row + s];
          }
        }
        std::copy_n(d_hT + (b * D + d0) * N, width * N, carried);
        for (index t = T - 1; t >= 0; --t) {
          const index channels = (t * B + b) * D + d0, row = (t * B + b) * N;
          decay_block(width, N, dt + channels, a_block, decays);
          std::fill_n(d_B, N, F(0)), std::fill_n(d_C, N, F(0));
          for (index j = 0; j < width; ++j) {
            const F delta = dt[channels + j], input = u[channels + j];
            const F grad_y = dy[channels + j], scale = delta * input;
            const F* a = a_block + j * N;
            const F* decay = decays + j * N;
            const F* previous = states + t * block + j * N;
            const F* current = states + (t + 1) * block + j * N;
            F* g = carried + j * N;
            F* d_aj = d_a + j * N;
            F d_decay = F(0), d_input = F(0);
#pragma omp simd reduction(+ : d_decay, d_input)
            for (index s = 0; s < N; ++s) {
              const F grad = g[s] + grad_y * Cm[row + s];           // ∂L/∂h<t>[s]
              const F d_exponent = grad * previous[s] * decay[s];  // ∂L/∂(Δ<t> A[s])
              d_C[s] += grad_y * current[s];
              d_B[s] += grad * scale;
              d_aj[s] += d_exponent * delta;
              d_decay += d_exponent * a[s];
              d_input += grad * Bm[row + s];  // ∂L/∂(Δ<t> u<t>)
              g[s] = grad * decay[s];
            }
            d_dt[channels + j] = d_decay + d_input * input;
            du[channels + j] = d_input * delta;
          }
          for (index s = 0; s < N; ++s) dB[row + s] += d_B[s], dC[row + s] += d_C[s];
        }
        std::copy_n(carried, width * N, d_h0 + (b * D + d0) * N);
      }
    }
  }
}

}  // namespace

extern "C" {

#define SCAN(suffix, V)                                                                          \
  void scan_forward_##suffix(index T, index B, index S, index lts, index lbs, const V* lam,      \
                             const V* beta, const V* h0, V* h) {                                 \
    scan_forward<V>(T, B, S, {lts, lbs}, lam, beta, h0, h);                                      \
  }                                                                                              \
  void scan_backward_##suffix(index T, index B, index S, index lts, index lbs, const V* lam,     \
                              const V* h0, const V* h, const V* d_h, V* d_beta, V* d_lam,        \
                              V* d_h0) {                                                         \
    scan_backward<V>(T, B, S, {lts, lbs}, lam, h0, h, d_h, d_beta, d_lam, d_h0);                 \
  }

SCAN(float32, float)
SCAN(float64, double)
SCAN(complex64, std::complex<float>)
SCAN(complex128, std::complex<double>)

#define GATED(name, Gates, suffix, F)                                                            \
  void name##_forward_##suffix(index T, index B, index n, const F* k, const F* h0, F* h) {       \
    gated_forward<Gates<F>, F>(T, B, n, k, h0, h);                                               \
  }                                                                                              \
  void name##_backward_##suffix(index T, index B, index n, const F* k, const F* h0, const F* h,  \
                                const F* d_h, F* dk, F* d_h0) {                                  \
    gated_backward<Gates<F>, F>(T, B, n, k, h0, h, d_h, dk, d_h0);                               \
  }

GATED(mingru, MinGRU, float32, float)
GATED(mingru, MinGRU, float64, double)
GATED(minlstm, MinLSTM, float32, float)
GATED(minlstm, MinLSTM, float64, double)

#define SELECTIVE(suffix, F)                                                                     \
  void selective_forward_##suffix(index T, index B, index D, index N, const F* u, const F* dt,   \
                                  const F* A, const F* Bm, const F* Cm, const F* h0, F* y,       \
                                  F* hT) {                                                       \
    selective_forward<F>(T, B, D, N, u, dt, A, Bm, Cm, h0, y, hT);                               \
  }                                                                                              \
  void selective_backward_##suffix(index T, index B, index D, index N, const F* u, const F* dt,  \
                                   const F* A, const F* Bm, const F* Cm, const F* h0,            \
                                   const F* dy, const F* d_hT, F* du, F* d_dt, F* dA, F* dB,     \
                                   F* dC, F* d_h0) {                                             \
    selective_backward<F>(T, B, D, N, u, dt, A, Bm, Cm, h0, dy, d_hT, du, d_dt, dA, dB, dC,     \
                          d_h0);                                                                 \
  }

SELECTIVE(float32, float)
SELECTIVE(float64, double)

}  // extern "C"
