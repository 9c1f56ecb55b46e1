// The LSTM and the peephole LSTM of NOTATION.md over a whole sequence, forward and backward,
// through oneDNN's fused LSTM primitive (seqexp/kernels/onednn.py calls it). oneDNN's gates are
// the course's, in the course's order (Γu, Γf, c̃, Γo), and its peepholes are the course's
// (Gers & Schmidhuber):
//   Γu   = σ(W_u [a<t-1>, x<t>] + p_u * c<t-1> + b_u)      Γf likewise, with p_f
//   c̃<t> = tanh(W_c [a<t-1>, x<t>] + b_c)
//   c<t> = Γu * c̃<t> + Γf * c<t-1>
//   Γo   = σ(W_o [a<t-1>, x<t>] + p_o * c<t> + b_o)        the output gate peeks at the new cell
//   a<t> = Γo * tanh(c<t>)
// One layer, one direction, float32, in seqexp's layouts, row-major and contiguous: x (T, B, n_x),
// outputs a<1..T> (T, B, n), states (B, n), W_x (4n, n_x), W_a (4n, n), b (4n), and the
// peepholes (3, n) as p_u, p_f, p_o, or null for the plain LSTM. oneDNN reorders the weights into
// its own layout and their gradients back. Scratch memory and the workspace that the forward pass
// leaves for the backward pass come from the caller. Each call returns null, or oneDNN's message
// when it refuses.
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <utility>

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using Arguments = std::unordered_map<int, memory>;
constexpr auto f32 = memory::data_type::f32;

dnnl::engine& cpu() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& queue() {
  static dnnl::stream stream(cpu());
  return stream;
}

memory wrap(const memory::desc& desc, const void* data) {
  return memory(desc, cpu(), const_cast<void*>(data));
}

void reorder(memory from, memory to) { dnnl::reorder(from, to).execute(queue(), from, to); }

// `given` in the layout `wanted`: itself where it is already, else a reordered copy.
memory in_layout(const memory::desc& wanted, const memory& given) {
  if (given.get_desc() == wanted) return given;
  memory copy(wanted, cpu());
  reorder(given, copy);
  return copy;
}

// One layer and direction of an LSTM: its sizes, and the memory descriptors they make.
struct Lstm {
  memory::dim T, B, n_x, n;
  bool peepholes, training;

  memory::desc sequence(memory::dim width) const { return {{T, B, width}, f32, tag::tnc}; }
  memory::desc state() const { return {{1, 1, B, n}, f32, tag::ldnc}; }
  // W_x or W_a as seqexp keeps them, (4n, inputs) row-major, or in a layout oneDNN picks (`any`)
  memory::desc weights(memory::dim inputs, tag layout = tag::ldgoi) const {
    return {{1, 1, inputs, 4, n}, f32, layout};
  }
  memory::desc peephole() const {
    return peepholes ? memory::desc({1, 1, 3, n}, f32, tag::ldgo) : memory::desc();
  }
  memory::desc bias() const { return {{1, 1, 4, n}, f32, tag::ldgo}; }

  static dnnl::primitive_attr scratch_from_caller() {
    dnnl::primitive_attr attributes;
    attributes.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return attributes;
  }

  dnnl::lstm_forward::primitive_desc forward() const {
    const auto kind = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    return {cpu(), kind, dnnl::rnn_direction::unidirectional_left2right, sequence(n_x), state(),
            state(), weights(n_x, tag::any), weights(n, tag::any), peephole(), bias(),
            sequence(n), state(), state(), scratch_from_caller()};
  }

  dnnl::lstm_backward::primitive_desc backward() const {
    return {cpu(), dnnl::prop_kind::backward, dnnl::rnn_direction::unidirectional_left2right,
            sequence(n_x), state(), state(), weights(n_x, tag::any), weights(n, tag::any),
            peephole(), bias(), sequence(n), state(), state(),
            sequence(n_x), state(), state(), weights(n_x, tag::any), weights(n, tag::any),
            peephole(), bias(), sequence(n), state(), state(),
            forward(), scratch_from_caller()};
  }

  // What both passes read: the inputs, the weights (in the pass's layout) and the outputs.
  template <typename PrimitiveDesc>
  Arguments forward_arguments(const PrimitiveDesc& pd, const float* p, const float* x,
                              const float* W_x, const float* W_a, const float* b, const float* a0,
                              const float* c0, const float* outputs, const float* a_last,
                              const float* c_last, void* workspace, void* scratch) const {
    Arguments arguments{
        {DNNL_ARG_SRC_LAYER, wrap(sequence(n_x), x)},
        {DNNL_ARG_SRC_ITER, wrap(state(), a0)},
        {DNNL_ARG_SRC_ITER_C, wrap(state(), c0)},
        {DNNL_ARG_WEIGHTS_LAYER, in_layout(pd.weights_layer_desc(), wrap(weights(n_x), W_x))},
        {DNNL_ARG_WEIGHTS_ITER, in_layout(pd.weights_iter_desc(), wrap(weights(n), W_a))},
        {DNNL_ARG_BIAS, wrap(bias(), b)},
        {DNNL_ARG_DST_LAYER, wrap(sequence(n), outputs)},
        {DNNL_ARG_DST_ITER, wrap(state(), a_last)},
        {DNNL_ARG_DST_ITER_C, wrap(state(), c_last)},
        {DNNL_ARG_SCRATCHPAD, wrap(pd.scratchpad_desc(), scratch)},
    };
    if (training) arguments[DNNL_ARG_WORKSPACE] = wrap(pd.workspace_desc(), workspace);
    if (peepholes) arguments[DNNL_ARG_WEIGHTS_PEEPHOLE] = wrap(peephole(), p);
    return arguments;
  }
};

thread_local std::string refusal;

template <typename Body>
const char* refusal_of(Body body) {
  try {
    body();
    return nullptr;
  } catch (const dnnl::error& error) {
    refusal = error.what();
    return refusal.c_str();
  }
}

}  // namespace

extern "C" {

// The bytes of the workspace the forward pass leaves for the backward pass, and of each pass's
// scratch memory, into bytes[0..2].
const char* lstm_buffer_bytes(int64_t T, int64_t B, int64_t n_x, int64_t n, int peepholes,
                              int training, int64_t* bytes) {
  return refusal_of([&] {
    const Lstm lstm{T, B, n_x, n, peepholes != 0, training != 0};
    const auto forward = lstm.forward();
    bytes[0] = training ? forward.workspace_desc().get_size() : 0;
    bytes[1] = forward.scratchpad_desc().get_size();
    bytes[2] = training ? lstm.backward().scratchpad_desc().get_size() : 0;
  });
}

const char* lstm_forward(int64_t T, int64_t B, int64_t n_x, int64_t n, int training,
                         const float* p, const float* x, const float* W_x, const float* W_a,
                         const float* b, const float* a0, const float* c0, float* outputs,
                         float* a_last, float* c_last, void* workspace, void* scratch) {
  return refusal_of([&] {
    const Lstm lstm{T, B, n_x, n, p != nullptr, training != 0};
    const auto pd = lstm.forward();
    dnnl::lstm_forward(pd).execute(
        queue(), lstm.forward_arguments(pd, p, x, W_x, W_a, b, a0, c0, outputs, a_last, c_last,
                                        workspace, scratch));
    queue().wait();
  });
}

// The loss's gradients with respect to every input of lstm_forward, from its gradients with
// respect to the outputs and the last state.
const char* lstm_backward(int64_t T, int64_t B, int64_t n_x, int64_t n, const float* p,
                          const float* x, const float* W_x, const float* W_a, const float* b,
                          const float* a0, const float* c0, const float* outputs,
                          const float* a_last, const float* c_last, void* workspace,
                          void* scratch, const float* d_outputs, const float* da_last,
                          const float* dc_last, float* dx, float* dW_x, float* dW_a, float* db,
                          float* dp, float* da0, float* dc0) {
  return refusal_of([&] {
    const Lstm lstm{T, B, n_x, n, p != nullptr, true};
    const auto pd = lstm.backward();
    // oneDNN adds the weights' gradients to what their memory holds: it starts from zeros
    const memory dW_x_own(pd.diff_weights_layer_desc(), cpu()), dW_a_own(pd.diff_weights_iter_desc(), cpu());
    for (const memory& gradient : {dW_x_own, dW_a_own})
      std::memset(gradient.get_data_handle(), 0, gradient.get_desc().get_size());
    std::memset(db, 0, 4 * n * sizeof(float));
    Arguments arguments = lstm.forward_arguments(pd, p, x, W_x, W_a, b, a0, c0, outputs, a_last,
                                                 c_last, workspace, scratch);
    arguments.insert({
        {DNNL_ARG_DIFF_DST_LAYER, wrap(lstm.sequence(n), d_outputs)},
        {DNNL_ARG_DIFF_DST_ITER, wrap(lstm.state(), da_last)},
        {DNNL_ARG_DIFF_DST_ITER_C, wrap(lstm.state(), dc_last)},
        {DNNL_ARG_DIFF_SRC_LAYER, wrap(lstm.sequence(n_x), dx)},
        {DNNL_ARG_DIFF_SRC_ITER, wrap(lstm.state(), da0)},
        {DNNL_ARG_DIFF_SRC_ITER_C, wrap(lstm.state(), dc0)},
        {DNNL_ARG_DIFF_WEIGHTS_LAYER, dW_x_own},
        {DNNL_ARG_DIFF_WEIGHTS_ITER, dW_a_own},
        {DNNL_ARG_DIFF_BIAS, wrap(lstm.bias(), db)},
    });
    if (lstm.peepholes) {
      std::memset(dp, 0, 3 * n * sizeof(float));
      arguments[DNNL_ARG_DIFF_WEIGHTS_PEEPHOLE] = wrap(lstm.peephole(), dp);
    }
    dnnl::lstm_backward(pd).execute(queue(), arguments);
    reorder(dW_x_own, wrap(lstm.weights(n_x), dW_x));
    reorder(dW_a_own, wrap(lstm.weights(n), dW_a));
    queue().wait();
  });
}

}  // extern "C"
