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

template <bool Peepholes>
void forward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* p, const float* x,
             const float* W_x, const float* b, const float* W_a, float* gates, float* cells,
             float* activations) {
  if (T * B * n == 0) return;  // no step, no row or no unit: nothing to compute
  multiply(matrix(T * B, n_x, x), matrix(n_x, 4 * n, W_x, tag::ba), matrix(T * B, 4 * n, gates),
           b);
  Product times_W_a_T(B, n, 4 * n, W_a, tag::ba);  // a<t-1> W_aᵀ
  std::vector<float> ra(B * 4 * n);
  for (int64_t t = 0; t < T; ++t) {
    times_W_a_T(activations + t * B * n, ra.data());
#pragma omp parallel for
    for (int64_t row = t * B; row < (t + 1) * B; ++row)
      forward_row<Peepholes>(n, gates + row * 4 * n, ra.data() + (row - t * B) * 4 * n,
                             cells + row * n, p, cells + (row + B) * n,
                             activations + (row + B) * n);
  }
}

template <bool Peepholes>
void backward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* p, const float* x,
              const float* W_x, const float* W_a, const float* gates, const float* cells,
              const float* activations, const float* d_outputs, float* dz, float* dc, float* da,
              float* dx, float* dW_x, float* dW_a) {
  if (T * B * n == 0) {  // nothing flows back through a step: dc stays ∂L/∂c<T>, the rest is 0
    std::fill_n(da, B * n, 0.0f);
    std::fill_n(dx, T * B * n_x, 0.0f);
    std::fill_n(dW_x, 4 * n * n_x, 0.0f);
    std::fill_n(dW_a, 4 * n * n, 0.0f);
    return;
  }
  Product times_W_a(B, 4 * n, n, W_a, tag::ab);  // dz<t> W_a
  std::vector<float> da_next(B * n, 0.0f);       // nothing comes back from beyond the last step
  for (int64_t t = T - 1; t >= 0; --t) {
#pragma omp parallel for
    for (int64_t row = t * B; row < (t + 1) * B; ++row)
      backward_row<Peepholes>(n, d_outputs + row * n, da_next.data() + (row - t * B) * n,
                              dc + (row - t * B) * n, gates + row * 4 * n, cells + row * n,
                              cells + (row + B) * n, p, dz + row * 4 * n);
    times_W_a(dz + t * B * 4 * n, t ? da_next.data() : da);
  }
  // The weights' gradients, Σ_t dz<t>ᵀ inputs<t>: one product over all steps each.
  const memory dz_T = matrix(4 * n, T * B, dz, tag::ba);
  multiply(dz_T, matrix(T * B, n, activations), matrix(4 * n, n, dW_a));
  multiply(dz_T, matrix(T * B, n_x, x), matrix(4 * n, n_x, dW_x));
  multiply(matrix(T * B, 4 * n, dz), matrix(4 * n, n_x, W_x), matrix(T * B, n_x, dx));
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

}  // extern "C"
