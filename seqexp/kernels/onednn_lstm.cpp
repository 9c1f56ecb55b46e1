// The LSTM and the peephole LSTM of NOTATION.md over a whole sequence, forward and backward, for
// seqexp/kernels/onednn.py. Every matrix product is oneDNN's: W_x x<t> + b for all steps before
// the loop, one W_a a<t-1> per step (its primitive, and W_a in oneDNN's layout, made once per
// sequence), and the weights' gradients for all steps after the loop. Between the products, a
// step's gate math is one vectorised pass over the batch rows, shared among torch's OpenMP threads:
//   Γu   = σ(z_u + p_u * c<t-1>)        Γf = σ(z_f + p_f * c<t-1>)        c̃<t> = tanh(z_c)
//   c<t> = Γu * c̃<t> + Γf * c<t-1>      Γo = σ(z_o + p_o * c<t>)          a<t> = Γo * tanh(c<t>)
// with z = W_x x<t> + b + W_a a<t-1> in blocks u, f, c, o, and without the p terms for the plain
// LSTM. float32, row-major and contiguous: x (T, B, n_x); gates and dz (T, B, 4n); cells and
// activations (T + 1, B, n), whose first rows hold c<0> and a<0>; W_x (4n, n_x), W_a (4n, n),
// b (4n); the peepholes p (3, n) as p_u, p_f, p_o, or null. Each call returns null, or the message
// of whatever went wrong (no exception leaves this file). Threads may call at once: each has its
// own oneDNN stream, and nothing else is shared but the engine, which oneDNN makes thread-safe.
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <unordered_map>
#include <vector>

namespace {

using dnnl::memory;
using tag = memory::format_tag;
constexpr auto f32 = memory::data_type::f32;

dnnl::engine& cpu() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A stream is not thread-safe: one per calling thread.
dnnl::stream& queue() {
  thread_local dnnl::stream stream(cpu());
  return stream;
}

// σ(z) = (1 + tanh(z / 2)) / 2: saturates cleanly, where 1 / (1 + exp(−z)) under -ffast-math
// turns exp's overflow into NaN.
inline float sigmoid(float z) { return 0.5f + 0.5f * std::tanh(0.5f * z); }

// Rows (B, inputs) times a weight matrix, once per step: the primitive, and the weights in
// oneDNN's own layout, are made once. `weights` holds (inputs, outputs) as `layout` says.
class Product {
 public:
  Product(memory::dim B, memory::dim inputs, memory::dim outputs, const float* weights, tag layout)
      : source_(memory::desc({B, inputs}, f32, tag::ab), cpu(), DNNL_MEMORY_NONE),
        destination_(memory::desc({B, outputs}, f32, tag::ab), cpu(), DNNL_MEMORY_NONE) {
    const memory::desc any({inputs, outputs}, f32, tag::any);
    const dnnl::matmul::primitive_desc pd(cpu(), source_.get_desc(), any, destination_.get_desc());
    memory given({{inputs, outputs}, f32, layout}, cpu(), const_cast<float*>(weights));
    weights_ = memory(pd.weights_desc(), cpu());
    dnnl::reorder(given, weights_).execute(queue(), given, weights_);
    product_ = dnnl::matmul(pd);
  }

  void operator()(const float* rows, float* result) {
    source_.set_data_handle(const_cast<float*>(rows));
    destination_.set_data_handle(result);
    product_.execute(queue(), {{DNNL_ARG_SRC, source_},
                               {DNNL_ARG_WEIGHTS, weights_},
                               {DNNL_ARG_DST, destination_}});
  }

 private:
  memory source_, destination_, weights_;
  dnnl::matmul product_;
};

// One batch row: zg holds z = W_x x<t> + b on entry and the gates Γu, Γf, c̃, Γo on return;
// ra = W_a a<t-1>.
template <bool Peepholes>
void forward_row(int64_t n, float* zg, const float* __restrict ra, const float* __restrict c_prev,
                 const float* __restrict p, float* __restrict c, float* __restrict a) {
  for (int64_t k = 0; k < n; ++k) {
    const float peek_u = Peepholes ? p[k] * c_prev[k] : 0.0f;
    const float peek_f = Peepholes ? p[n + k] * c_prev[k] : 0.0f;
    const float u = sigmoid(zg[k] + ra[k] + peek_u);
    const float f = sigmoid(zg[n + k] + ra[n + k] + peek_f);
    const float g = std::tanh(zg[2 * n + k] + ra[2 * n + k]);
    const float c_new = u * g + f * c_prev[k];
    const float peek_o = Peepholes ? p[2 * n + k] * c_new : 0.0f;
    const float o = sigmoid(zg[3 * n + k] + ra[3 * n + k] + peek_o);
    zg[k] = u;
    zg[n + k] = f;
    zg[2 * n + k] = g;
    zg[3 * n + k] = o;
    c[k] = c_new;
    a[k] = o * std::tanh(c_new);
  }
}

// One batch row, from ∂L/∂a<t> = da_out + da_next (the loss's own, and dz<t+1> W_a through the
// next step) and ∂L/∂c<t> (dc): the step's pre-activation gradients dz; dc becomes ∂L/∂c<t-1>.
// tanh(c<t>) is computed again rather than kept.
template <bool Peepholes>
void backward_row(int64_t n, const float* __restrict da_out, const float* __restrict da_next,
                  float* __restrict dc, const float* __restrict gates,
                  const float* __restrict c_prev, const float* __restrict c,
                  const float* __restrict p, float* __restrict dz) {
  for (int64_t k = 0; k < n; ++k) {
    const float da = da_out[k] + da_next[k];
    const float h = std::tanh(c[k]);
    const float u = gates[k], f = gates[n + k], g = gates[2 * n + k], o = gates[3 * n + k];
    const float dz_o = da * h * o * (1 - o);
    const float dc_t = dc[k] + da * o * (1 - h * h) + (Peepholes ? dz_o * p[2 * n + k] : 0.0f);
    const float dz_u = dc_t * g * u * (1 - u);
    const float dz_f = dc_t * c_prev[k] * f * (1 - f);
    dz[k] = dz_u;
    dz[n + k] = dz_f;
    dz[2 * n + k] = dc_t * u * (1 - g * g);
    dz[3 * n + k] = dz_o;
    dc[k] = dc_t * f + (Peepholes ? dz_u * p[k] + dz_f * p[n + k] : 0.0f);
  }
}

// log σ(x) = min(x, 0) − log(1 + exp(−|x|)), which neither overflows nor loses small values.
inline float log_sigmoid(float x) { return std::min(x, 0.0f) - std::log1p(std::exp(-std::fabs(x))); }

// One batch row of the sLSTM: zg holds W x<t> + b on entry and the pre-activations z̃, ĩ, f̃, õ
// (R h<t-1> added, from rh) on return; the states after the step go to c, n, m, h.
void slstm_forward_row(int64_t n, float* zg, const float* __restrict rh,
                       const float* __restrict c_prev, const float* __restrict n_prev,
                       const float* __restrict m_prev, float* __restrict c, float* __restrict nrm,
                       float* __restrict m, float* __restrict h) {
  for (int64_t k = 0; k < n; ++k) {
    const float z = zg[k] + rh[k], i = zg[n + k] + rh[n + k];
    const float f = zg[2 * n + k] + rh[2 * n + k], o = zg[3 * n + k] + rh[3 * n + k];
    zg[k] = z, zg[n + k] = i, zg[2 * n + k] = f, zg[3 * n + k] = o;
    const float log_f = log_sigmoid(f);
    const float m_new = n_prev[k] == 0.0f ? i : std::max(log_f + m_prev[k], i);
    const float i_gate = std::exp(i - m_new), f_gate = std::exp(log_f + m_prev[k] - m_new);
    c[k] = f_gate * c_prev[k] + i_gate * std::tanh(z);
    nrm[k] = f_gate * n_prev[k] + i_gate;
    m[k] = m_new;
    h[k] = sigmoid(o) * c[k] / nrm[k];
  }
}

// Its backward, from ∂L/∂h<t> = dh_out + dh_next and ∂L/∂c<t>, ∂L/∂n<t>, ∂L/∂m<t> (dc, dn, dm,
// which become those of step t − 1): the pre-activations' gradients dz. The stabiliser's own
// gradient is followed as autograd follows it through the step, ties of its max split in halves.
void slstm_backward_row(int64_t n, const float* __restrict dh_out, const float* __restrict dh_next,
                        float* __restrict dc, float* __restrict dn, float* __restrict dm,
                        const float* __restrict pre, const float* __restrict c_prev,
                        const float* __restrict n_prev, const float* __restrict m_prev,
                        const float* __restrict c, const float* __restrict nrm,
                        const float* __restrict m, float* __restrict dz) {
  for (int64_t k = 0; k < n; ++k) {
    const float z = pre[k], i = pre[n + k], f = pre[2 * n + k], o = pre[3 * n + k];
    const float log_f = log_sigmoid(f), candidate = std::tanh(z), out_gate = sigmoid(o);
    const float i_gate = std::exp(i - m[k]), f_gate = std::exp(log_f + m_prev[k] - m[k]);
    const float dh = dh_out[k] + dh_next[k];
    const float dc_t = dc[k] + dh * out_gate / nrm[k];
    const float dn_t = dn[k] - dh * out_gate * c[k] / (nrm[k] * nrm[k]);
    const float d_f_gate = (dc_t * c_prev[k] + dn_t * n_prev[k]) * f_gate;  // ∂L/∂(log f<t>)
    const float d_i_gate = (dc_t * candidate + dn_t) * i_gate;              // ∂L/∂(log i<t>)
    const float dm_t = dm[k] - d_f_gate - d_i_gate;                         // all of ∂L/∂m<t>
    const float through = log_f + m_prev[k];  // m<t> = max(through, ĩ), or ĩ while n<t-1> = 0
    const float to_through = n_prev[k] == 0.0f ? 0.0f
                             : through > i     ? dm_t
                             : through == i    ? 0.5f * dm_t
                                               : 0.0f;
    const float d_log_f = d_f_gate + to_through;
    dz[k] = dc_t * i_gate * (1 - candidate * candidate);
    dz[n + k] = d_i_gate + dm_t - to_through;
    dz[2 * n + k] = d_log_f * sigmoid(-f);  // d log σ(f) / df = σ(−f)
    dz[3 * n + k] = dh * c[k] / nrm[k] * out_gate * (1 - out_gate);
    dc[k] = dc_t * f_gate;
    dn[k] = dn_t * f_gate;
    dm[k] = d_log_f;  // m<t-1> enters as log f<t> does
  }
}

memory matrix(memory::dim rows, memory::dim columns, const float* data, tag layout = tag::ab) {
  return memory({{rows, columns}, f32, layout}, cpu(), const_cast<float*>(data));
}

// c = a b (+ bias), once: oneDNN's primitive cache keeps the primitive for the next call.
void multiply(memory a, memory b, memory c, const float* bias = nullptr) {
  const memory::dim columns = c.get_desc().get_dims()[1];
  const memory::desc bias_desc = bias ? memory::desc({1, columns}, f32, tag::ab) : memory::desc();
  const dnnl::matmul::primitive_desc pd(cpu(), a.get_desc(), b.get_desc(), bias_desc, c.get_desc());
  std::unordered_map<int, memory> arguments{
      {DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
  if (bias) arguments[DNNL_ARG_BIAS] = memory(bias_desc, cpu(), const_cast<float*>(bias));
  dnnl::matmul(pd).execute(queue(), arguments);
}

// The loop both LSTMs share, forward: W_x x<t> + b for all steps into gates (T, B, 4n), then per
// step one product W_a a<t-1> (a<t-1> from outputs, (T + 1, B, n)) and `row(row, t, W_a a<t-1>)`
// over the batch rows, which writes the gates and the step's states.
template <typename Row>
void loop_forward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* x, const float* W_x,
                  const float* b, const float* W_a, float* gates, const float* outputs, Row row) {
  if (T * B * n == 0) return;  // no step, no row or no unit: nothing to compute
  multiply(matrix(T * B, n_x, x), matrix(n_x, 4 * n, W_x, tag::ba), matrix(T * B, 4 * n, gates),
           b);
  Product times_W_a_T(B, n, 4 * n, W_a, tag::ba);  // a<t-1> W_aᵀ
  std::vector<float> ra(B * 4 * n);
  for (int64_t t = 0; t < T; ++t) {
    times_W_a_T(outputs + t * B * n, ra.data());
#pragma omp parallel for
    for (int64_t r = t * B; r < (t + 1) * B; ++r) row(r, t, ra.data() + (r - t * B) * 4 * n);
  }
}

// Backward: per step `row(row, t, da_next)` over the batch rows, with ∂L/∂a<t> through the next
// step in da_next, writing dz<t>; then dz<t> W_a (into da0 at the first step); then the weights'
// gradients, Σ_t dz<t>ᵀ inputs<t>, one product over all steps each, and dx.
template <typename Row>
void loop_backward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* x,
                   const float* W_x, const float* W_a, const float* outputs, float* dz,
                   float* da0, float* dx, float* dW_x, float* dW_a, Row row) {
  if (T * B * n == 0) {  // nothing flows back through a step: the carried states stay, the rest 0
    std::fill_n(da0, B * n, 0.0f);
    std::fill_n(dx, T * B * n_x, 0.0f);
    std::fill_n(dW_x, 4 * n * n_x, 0.0f);
    std::fill_n(dW_a, 4 * n * n, 0.0f);
    return;
  }
  Product times_W_a(B, 4 * n, n, W_a, tag::ab);  // dz<t> W_a
  std::vector<float> da_next(B * n, 0.0f);       // nothing comes back from beyond the last step
  for (int64_t t = T - 1; t >= 0; --t) {
#pragma omp parallel for
    for (int64_t r = t * B; r < (t + 1) * B; ++r) row(r, t, da_next.data() + (r - t * B) * n);
    times_W_a(dz + t * B * 4 * n, t ? da_next.data() : da0);
  }
  const memory dz_T = matrix(4 * n, T * B, dz, tag::ba);
  multiply(dz_T, matrix(T * B, n, outputs), matrix(4 * n, n, dW_a));
  multiply(dz_T, matrix(T * B, n_x, x), matrix(4 * n, n_x, dW_x));
  multiply(matrix(T * B, 4 * n, dz), matrix(4 * n, n_x, W_x), matrix(T * B, n_x, dx));
}

template <bool Peepholes>
void forward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* p, const float* x,
             const float* W_x, const float* b, const float* W_a, float* gates, float* cells,
             float* activations) {
  loop_forward(T, B, n_x, n, x, W_x, b, W_a, gates, activations,
               [&](int64_t row, int64_t, const float* ra) {
                 forward_row<Peepholes>(n, gates + row * 4 * n, ra, cells + row * n, p,
                                        cells + (row + B) * n, activations + (row + B) * n);
               });
}

template <bool Peepholes>
void backward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* p, const float* x,
              const float* W_x, const float* W_a, const float* gates, const float* cells,
              const float* activations, const float* d_outputs, float* dz, float* dc, float* da,
              float* dx, float* dW_x, float* dW_a) {
  loop_backward(T, B, n_x, n, x, W_x, W_a, activations, dz, da, dx, dW_x, dW_a,
                [&](int64_t row, int64_t t, const float* da_next) {
                  backward_row<Peepholes>(n, d_outputs + row * n, da_next, dc + (row - t * B) * n,
                                          gates + row * 4 * n, cells + row * n,
                                          cells + (row + B) * n, p, dz + row * 4 * n);
                });
}

// The sLSTM's: R (4n, n; block-diagonal over the heads, given dense) in W_a's place, and the
// states h, c, n, m each (T + 1, B, n) after their initial rows.
void slstm_forward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* x, const float* W_x,
                   const float* b, const float* R, float* gates, float* h, float* c, float* nrm,
                   float* m) {
  loop_forward(T, B, n_x, n, x, W_x, b, R, gates, h, [&](int64_t row, int64_t, const float* rh) {
    const int64_t now = row * n, next = (row + B) * n;
    slstm_forward_row(n, gates + row * 4 * n, rh, c + now, nrm + now, m + now, c + next,
                      nrm + next, m + next, h + next);
  });
}

void slstm_backward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* x,
                    const float* W_x, const float* R, const float* gates, const float* h,
                    const float* c, const float* nrm, const float* m, const float* d_outputs,
                    float* dz, float* dc, float* dn, float* dm, float* dh0, float* dx,
                    float* dW_x, float* dR) {
  loop_backward(T, B, n_x, n, x, W_x, R, h, dz, dh0, dx, dW_x, dR,
                [&](int64_t row, int64_t t, const float* dh_next) {
                  const int64_t mine = (row - t * B) * n, now = row * n, next = (row + B) * n;
                  slstm_backward_row(n, d_outputs + now, dh_next, dc + mine, dn + mine, dm + mine,
                                     gates + row * 4 * n, c + now, nrm + now, m + now, c + next,
                                     nrm + next, m + next, dz + row * 4 * n);
                });
}

// The message of what went wrong: written without allocating, as it may follow std::bad_alloc.
thread_local char refusal[1024];

const char* refuse(const char* what, const char* why) {
  std::snprintf(refusal, sizeof refusal, "%s%s", what, why);
  return refusal;
}

template <typename Body>
const char* refusal_of(Body body) {
  try {
    body();
    return nullptr;
  } catch (const dnnl::error& error) {
    return refuse("oneDNN refused the LSTM: ", error.what());
  } catch (const std::exception& error) {
    return refuse("the LSTM failed in C++: ", error.what());
  } catch (...) {
    return refuse("the LSTM failed in C++: ", "an exception of unknown type");
  }
}

}  // namespace

extern "C" {

// The forward pass: gates (T, B, 4n), and c<1..T>, a<1..T> after c<0>, a<0> in cells and
// activations (T + 1, B, n).
const char* lstm_forward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* p,
                         const float* x, const float* W_x, const float* b, const float* W_a,
                         float* gates, float* cells, float* activations) {
  return refusal_of([&] {
    (p ? forward<true> : forward<false>)(T, B, n_x, n, p, x, W_x, b, W_a, gates, cells,
                                         activations);
    queue().wait();
  });
}

// The backward pass, from ∂L/∂a<t> (d_outputs, (T, B, n)) and ∂L/∂c<T> (dc, which becomes
// ∂L/∂c<0>): ∂L/∂z<t> for every step into dz, ∂L/∂a<0> into da, and the gradients of x, W_x and
// W_a. (Those of b and the peepholes are sums over dz, left to the caller.)
const char* lstm_backward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* p,
                          const float* x, const float* W_x, const float* W_a, const float* gates,
                          const float* cells, const float* activations, const float* d_outputs,
                          float* dz, float* dc, float* da, float* dx, float* dW_x, float* dW_a) {
  return refusal_of([&] {
    (p ? backward<true> : backward<false>)(T, B, n_x, n, p, x, W_x, W_a, gates, cells,
                                           activations, d_outputs, dz, dc, da, dx, dW_x, dW_a);
    queue().wait();
  });
}

// The sLSTM (the equations in seqexp/cells/slstm.py): gates (T, B, 4n) get the pre-activations
// z̃, ĩ, f̃, õ; h, c, n, m (T + 1, B, n) the states after their given first rows.
const char* slstm_forward_float32(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* x,
                                  const float* W_x, const float* b, const float* R, float* gates,
                                  float* h, float* c, float* nrm, float* m) {
  return refusal_of([&] {
    slstm_forward(T, B, n_x, n, x, W_x, b, R, gates, h, c, nrm, m);
    queue().wait();
  });
}

// Its backward, from ∂L/∂h<t> (d_outputs) and ∂L/∂c<T>, ∂L/∂n<T>, ∂L/∂m<T> (dc, dn, dm, which
// become those of step 0): dz, ∂L/∂h<0> (dh0) and the gradients of x, W_x and R.
const char* slstm_backward_float32(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* x,
                                   const float* W_x, const float* R, const float* gates,
                                   const float* h, const float* c, const float* nrm,
                                   const float* m, const float* d_outputs, float* dz, float* dc,
                                   float* dn, float* dm, float* dh0, float* dx, float* dW_x,
                                   float* dR) {
  return refusal_of([&] {
    slstm_backward(T, B, n_x, n, x, W_x, R, gates, h, c, nrm, m, d_outputs, dz, dc, dn, dm, dh0,
                   dx, dW_x, dR);
    queue().wait();
  });
}

}  // extern "C"
