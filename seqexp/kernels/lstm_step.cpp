// One LSTM step's gate math, forward and backward, for seqexp's CPU kernel
// (seqexp/kernels/cpu.py). The matrix products stay with torch; what is here is everything
// between them, in one pass over the batch instead of a dozen torch ops, its rows shared among
// `threads` OpenMP threads (torch's own OpenMP runtime, so torch's thread count).
//
// Layouts are row-major and contiguous: pre-activations, gates and their gradients are (B, 4n)
// with blocks u, f, c, o; states are (B, n), except the loss's gradient da_out, whose rows lie
// ld_out apart (0 where the loss broadcasts one row); the peepholes p are (3, n) for p_u, p_f,
// p_o, or null for the plain LSTM.
#include <cmath>
#include <cstdint>

namespace {

// σ(z) = (1 + tanh(z / 2)) / 2: saturates cleanly, where 1 / (1 + exp(−z)) under -ffast-math
// turns exp's overflow into NaN.
template <typename Real>
inline Real sigmoid(Real z) {
  return Real(0.5) + Real(0.5) * std::tanh(Real(0.5) * z);
}

// One batch row, from wx = W_x x<t> + b and ra = W_a a<t-1>, with z = wx + ra:
//   Γu   = σ(z_u + p_u * c<t-1>)       Γf = σ(z_f + p_f * c<t-1>)       c̃<t> = tanh(z_c)
//   c<t> = Γu * c̃<t> + Γf * c<t-1>     Γo = σ(z_o + p_o * c<t>)         a<t> = Γo * tanh(c<t>)
template <typename Real, bool Peepholes>
inline void forward_row(int64_t n, const Real* __restrict wx, const Real* __restrict ra,
                        const Real* __restrict c_prev, Real* __restrict gates, Real* __restrict c,
                        Real* __restrict a, const Real* __restrict p) {
  Real* __restrict gamma_u = gates;
  Real* __restrict gamma_f = gates + n;
  Real* __restrict c_tilde = gates + 2 * n;
  Real* __restrict gamma_o = gates + 3 * n;
  for (int64_t k = 0; k < n; ++k) {
    const Real z_u = wx[k] + ra[k];
    const Real z_f = wx[n + k] + ra[n + k];
    const Real z_c = wx[2 * n + k] + ra[2 * n + k];
    const Real z_o = wx[3 * n + k] + ra[3 * n + k];
    const Real u = sigmoid(z_u + (Peepholes ? p[k] * c_prev[k] : Real(0)));
    const Real f = sigmoid(z_f + (Peepholes ? p[n + k] * c_prev[k] : Real(0)));
    const Real g = std::tanh(z_c);
    const Real c_new = u * g + f * c_prev[k];
    const Real o = sigmoid(z_o + (Peepholes ? p[2 * n + k] * c_new : Real(0)));
    gamma_u[k] = u;
    gamma_f[k] = f;
    c_tilde[k] = g;
    gamma_o[k] = o;
    c[k] = c_new;
    a[k] = o * std::tanh(c_new);
  }
}

// One batch row, from ∂L/∂a<t> = da_out + da_next (the loss's own, and dz<t+1> W_a through the
// next step) and ∂L/∂c<t> (dc): the step's pre-activation gradients dz; dc becomes ∂L/∂c<t-1>.
// tanh(c<t>) is computed again rather than kept. ∂L/∂a<t-1> through this step, dz W_a, is left
// to the caller's product.
template <typename Real, bool Peepholes>
inline void backward_row(int64_t n, const Real* __restrict da_out,
                         const Real* __restrict da_next, Real* __restrict dc,
                         const Real* __restrict gates,
                         const Real* __restrict c_prev, const Real* __restrict c,
                         Real* __restrict dz, const Real* __restrict p) {
  const Real* __restrict gamma_u = gates;
  const Real* __restrict gamma_f = gates + n;
  const Real* __restrict c_tilde = gates + 2 * n;
  const Real* __restrict gamma_o = gates + 3 * n;
  Real* __restrict dz_u = dz;
  Real* __restrict dz_f = dz + n;
  Real* __restrict dz_c = dz + 2 * n;
  Real* __restrict dz_o = dz + 3 * n;
  for (int64_t k = 0; k < n; ++k) {
    const Real da = da_out[k] + da_next[k];
    const Real h = std::tanh(c[k]);
    const Real u = gamma_u[k], f = gamma_f[k], g = c_tilde[k], o = gamma_o[k];
    dz_o[k] = da * h * o * (Real(1) - o);
    const Real dc_t =
        dc[k] + da * o * (Real(1) - h * h) + (Peepholes ? dz_o[k] * p[2 * n + k] : Real(0));
    dz_u[k] = dc_t * g * u * (Real(1) - u);
    dz_f[k] = dc_t * c_prev[k] * f * (Real(1) - f);
    dz_c[k] = dc_t * u * (Real(1) - g * g);
    dc[k] = dc_t * f + (Peepholes ? dz_u[k] * p[k] + dz_f[k] * p[n + k] : Real(0));
  }
}

template <typename Real, bool Peepholes>
void forward(int64_t B, int64_t n, const Real* p, int threads, const Real* wx, const Real* ra,
             const Real* c_prev, Real* gates, Real* c, Real* a) {
#pragma omp parallel for num_threads(threads)
  for (int64_t b = 0; b < B; ++b)
    forward_row<Real, Peepholes>(n, wx + b * 4 * n, ra + b * 4 * n, c_prev + b * n,
                                 gates + b * 4 * n, c + b * n, a + b * n, p);
}

template <typename Real, bool Peepholes>
void backward(int64_t B, int64_t n, const Real* p, int threads, int64_t ld_out, const Real* da_out,
              const Real* da_next, Real* dc, const Real* gates, const Real* c_prev, const Real* c,
              Real* dz) {
#pragma omp parallel for num_threads(threads)
  for (int64_t b = 0; b < B; ++b)
    backward_row<Real, Peepholes>(n, da_out + b * ld_out, da_next + b * n, dc + b * n,
                                  gates + b * 4 * n, c_prev + b * n, c + b * n, dz + b * 4 * n, p);
}

}  // namespace

// lstm_forward_float, lstm_backward_float, and the same for double, whose arguments are those of
// forward and backward above; p null for the plain LSTM.
#define SEQEXP_LSTM_STEPS(Real)                                                              \
  void lstm_forward_##Real(int64_t B, int64_t n, const Real* p, int threads, const Real* wx, \
                           const Real* ra, const Real* c_prev, Real* gates, Real* c,         \
                           Real* a) {                                                        \
    (p ? forward<Real, true> : forward<Real, false>)(B, n, p, threads, wx, ra, c_prev,       \
                                                     gates, c, a);                           \
  }                                                                                          \
  void lstm_backward_##Real(int64_t B, int64_t n, const Real* p, int threads,                \
                            int64_t ld_out, const Real* da_out, const Real* da_next,         \
                            Real* dc, const Real* gates, const Real* c_prev, const Real* c,  \
                            Real* dz) {                                                      \
    (p ? backward<Real, true> : backward<Real, false>)(B, n, p, threads, ld_out, da_out,     \
                                                       da_next, dc, gates, c_prev, c, dz);   \
  }

extern "C" {
SEQEXP_LSTM_STEPS(float)
SEQEXP_LSTM_STEPS(double)
}
