// The CPU kernels and the autograd of a Basis's op family (runtime/kernels/ops.py), in C++.
//
// Basis-independent: built once per machine and torch version against torch's headers and loaded with ctypes
// (runtime/kernels/torch_glue.py). cartinv_attach_family() registers, for ops already defined by ops.py, the CPU
// kernels (calling a fused library's entry points, runtime/kernels/csrc/fused_cpu.cpp) and the Autograd kernels
// (forward -> backward -> double backward) under the dispatcher, so an eager call runs no Python between the
// caller and the kernels: at 21 atoms a forward + backward step cost 86 us this way against 217 us through
// Python's custom-op autograd (the kernels themselves 80 us). Same maths, same outputs bit for bit.

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;
using Pair = std::tuple<Tensor, Tensor>;
using Triple = std::tuple<Tensor, Tensor, Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The fused library's entry points (fused_cpu.cpp, extern "C"), for one scalar type.
template <typename S>
struct Entries {
    int (*forward)(const S*, const S*, const int64_t*, int64_t, int64_t, int64_t, S*, S*, int);
    int (*backward)(const S*, const S*, const int64_t*, int64_t, int64_t, int64_t, const S*, const S*, S*, S*, int);
    int (*double_backward)(const S*, const S*, const int64_t*, int64_t, int64_t, int64_t, const S*, const S*,
                           const S*, S*, S*, S*, int);
};

constexpr int64_t HUGE_PAGE = int64_t(1) << 21;

// torch's empty, with buffers of two huge pages or more marked for transparent huge pages before the kernel first
// touches them (512x fewer page faults; a hint only).
Tensor fresh(at::IntArrayRef shape, const at::TensorOptions& options)
{
    Tensor out = at::empty(shape, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const int64_t nbytes = out.numel() * int64_t(out.element_size());
    if (nbytes >= 2 * HUGE_PAGE) {
        const auto address = reinterpret_cast<uintptr_t>(out.data_ptr());
        const uintptr_t start = (address + HUGE_PAGE - 1) & ~uintptr_t(HUGE_PAGE - 1);
        const uintptr_t length = (address + uintptr_t(nbytes) - start) & ~uintptr_t(HUGE_PAGE - 1);
        if (start < address + uintptr_t(nbytes) && length > 0) madvise(reinterpret_cast<void*>(start), length, MADV_HUGEPAGE);
    }
#endif
    return out;
}

// Memory for outputs the kernels fill in full, reused once nothing else holds it (cpu_backend.BufferPool's rule:
// a storage is handed out again only when the pool's reference is its last one, so memory a graph saved, a
// caller kept, a view or a shallow copy holds is never written). At most two storages, the newest.
class Pool {
public:
    Tensor take(at::IntArrayRef shape, const at::TensorOptions& options)
    {
        if (c10::InferenceMode::is_enabled()) return fresh(shape, options);  // such tensors cannot be saved later
        const size_t nbytes = size_t(c10::multiply_integers(shape)) * options.dtype().itemsize();
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& storage : held_)
            if (storage.nbytes() == nbytes && storage.use_count() == 1)
                return at::empty({0}, options).set_(storage, 0, shape);
        Tensor out = fresh(shape, options);
        if (nbytes > 0) {
            if (held_.size() >= KEEP) {  // make room: an idle storage, else the oldest (its holder keeps it)
                size_t drop = 0;
                for (size_t k = 0; k < held_.size(); ++k)
                    if (held_[k].use_count() == 1) { drop = k; break; }
                held_.erase(held_.begin() + int64_t(drop));
            }
            held_.push_back(out.storage());
        }
        return out;
    }
    void clear() { std::lock_guard<std::mutex> lock(mutex_); held_.clear(); }
    size_t size() { std::lock_guard<std::mutex> lock(mutex_); return held_.size(); }

private:
    static constexpr size_t KEEP = 2;
    std::mutex mutex_;
    std::vector<c10::Storage> held_;
};

using ForwardOp = Pair(const Tensor&, const Tensor&, const Tensor&, int64_t);
using InferOp = Tensor(const Tensor&, const Tensor&, const Tensor&, int64_t);
using BackwardOp = Pair(const Tensor&, const Tensor&, const Tensor&, int64_t, const Tensor&, const Tensor&);
using DoubleBackwardOp = Triple(const Tensor&, const Tensor&, const Tensor&, int64_t, const Tensor&,
                                const std::optional<Tensor>&, const std::optional<Tensor>&);

struct Family {
    std::string name;  // <namespace>::<prefix>
    Entries<float> f32;
    Entries<double> f64;
    int64_t channels, n_coords, n_invariants, lanes_f32, lanes_f64;
    std::string error_prefix;           // how each status's message begins (cpu_backend.ERROR_PREFIX)
    std::array<std::string, 4> errors;  // the messages of statuses -1 .. -4 (cpu_backend.ERRORS)
    std::array<bool, 4> about_data;     // whether each is about the data (cpu_backend.VALUE_ERRORS)
    Pool invariants, moments, grad_r, grad_w;
    c10::TypedOperatorHandle<ForwardOp> forward_op;
    c10::TypedOperatorHandle<InferOp> infer_op;
    c10::TypedOperatorHandle<BackwardOp> backward_op;
    c10::TypedOperatorHandle<DoubleBackwardOp> double_backward_op;

    int64_t moments_width(int64_t groups, bool f32_) const
    {
        const int64_t lanes = f32_ ? lanes_f32 : lanes_f64;
        return (groups + lanes - 1) / lanes * n_coords * lanes;
    }
};

std::mutex registry_mutex;
std::vector<std::unique_ptr<Family>> families;          // never freed: kernels refer to them until exit
std::vector<std::unique_ptr<torch::Library>> libraries;  // the registrations, alive as long as the process

// Autograd nodes carry their family as an integer (saved_data holds IValues): its address, which stays valid (and
// needs no lookup in `families`, which another thread may be growing) because families are never freed.
int64_t handle(Family* f) { return int64_t(reinterpret_cast<intptr_t>(f)); }
Family& family(int64_t handle) { return *reinterpret_cast<Family*>(intptr_t(handle)); }

// A kernel status as the error cpu_backend raises for it: ValueError for bad data (cpu_backend.VALUE_ERRORS), else
// RuntimeError; the message is "<error_prefix><kernel>: <why>" like the Python path's.
void check_status(const Family& f, const char* kernel, int status)
{
    if (status == 0) return;
    const bool known = status <= -1 && status >= -4;
    const std::string why = known ? f.errors[size_t(-status - 1)] : "error " + std::to_string(status);
    const std::string message = f.error_prefix + kernel + ": " + why;
    if (known && f.about_data[size_t(-status - 1)]) C10_THROW_ERROR(ValueError, message);
    TORCH_CHECK(false, message);
}

// The checks the entry points rely on (shapes, dtypes, devices): a direct call of an op with other tensors is an
// error, never a read out of bounds.
void check_inputs(const Family& f, const Tensor& r, const Tensor& w, const Tensor& centers, int64_t n_atoms)
{
    TORCH_CHECK(r.device().is_cpu() && w.device().is_cpu() && centers.device().is_cpu(),
                f.name, ": the fused CPU kernels take CPU tensors");
    TORCH_CHECK(r.scalar_type() == at::kFloat || r.scalar_type() == at::kDouble, f.name,
                ": r must be float32 or float64, got ", r.scalar_type());
    TORCH_CHECK(w.scalar_type() == r.scalar_type(), f.name, ": w has dtype ", w.scalar_type(), ", r ", r.scalar_type());
    TORCH_CHECK(centers.scalar_type() == at::kLong, f.name, ": centers must be int64, got ", centers.scalar_type());
    TORCH_CHECK(r.dim() == 2 && r.size(1) == 3, f.name, ": r must have shape [P, 3], got ", r.sizes());
    TORCH_CHECK(w.dim() == 3 && w.size(0) == r.size(0) && w.size(1) > 0 && w.size(2) == f.channels, f.name,
                ": w must have shape [P, G, ", f.channels, "] with P = ", r.size(0), " and G > 0, got ", w.sizes());
    TORCH_CHECK(centers.dim() == 1 && centers.size(0) == r.size(0), f.name, ": centers must have shape [",
                r.size(0), "], got ", centers.sizes());
    TORCH_CHECK(n_atoms >= 0, f.name, ": n_atoms must be >= 0, got ", n_atoms);
}

void check_like(const Family& f, const char* what, const Tensor& t, const Tensor& r, at::IntArrayRef shape)
{
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == r.scalar_type() && t.sizes() == shape, f.name, ": ", what,
                " must be a CPU ", r.scalar_type(), " tensor of shape ", shape, ", got ", t.scalar_type(), " ",
                t.sizes());
}

template <typename S>
const S* cptr(const Tensor& t) { return t.defined() ? t.const_data_ptr<S>() : nullptr; }

template <typename S> const Entries<S>& entries(const Family& f);
template <> const Entries<float>& entries<float>(const Family& f) { return f.f32; }
template <> const Entries<double>& entries<double>(const Family& f) { return f.f64; }

// The entry points on tensors (contiguous, checked), for the scalar type S of r.
template <typename S>
int run_forward(const Family& f, const Tensor& r, const Tensor& w, const Tensor& c, int64_t n_atoms, Tensor& out,
                Tensor& T)
{
    return entries<S>(f).forward(r.const_data_ptr<S>(), w.const_data_ptr<S>(), c.const_data_ptr<int64_t>(),
                                 r.size(0), n_atoms, w.size(1), out.data_ptr<S>(),
                                 T.defined() ? T.data_ptr<S>() : nullptr, at::get_num_threads());
}

template <typename S>
int run_backward(const Family& f, const Tensor& r, const Tensor& w, const Tensor& c, int64_t n_atoms,
                 const Tensor& saved, const Tensor& grad_out, Tensor& gr, Tensor& gw)
{
    return entries<S>(f).backward(r.const_data_ptr<S>(), w.const_data_ptr<S>(), c.const_data_ptr<int64_t>(),
                                  r.size(0), n_atoms, w.size(1), saved.const_data_ptr<S>(),
                                  grad_out.const_data_ptr<S>(), gr.data_ptr<S>(), gw.data_ptr<S>(),
                                  at::get_num_threads());
}

template <typename S>
int run_double_backward(const Family& f, const Tensor& r, const Tensor& w, const Tensor& c, int64_t n_atoms,
                        const Tensor& grad_out, const Tensor& ggr, const Tensor& ggw, Tensor& gr, Tensor& gw,
                        Tensor& ggI)
{
    return entries<S>(f).double_backward(r.const_data_ptr<S>(), w.const_data_ptr<S>(), c.const_data_ptr<int64_t>(),
                                         r.size(0), n_atoms, w.size(1), grad_out.const_data_ptr<S>(), cptr<S>(ggr),
                                         cptr<S>(ggw), gr.data_ptr<S>(), gw.data_ptr<S>(), ggI.data_ptr<S>(),
                                         at::get_num_threads());
}

// ---- CPU kernels ---------------------------------------------------------------------------------------

Pair cpu_forward(Family& f, const Tensor& r_, const Tensor& w_, const Tensor& c_, int64_t n_atoms, bool moments)
{
    check_inputs(f, r_, w_, c_, n_atoms);
    const Tensor r = r_.contiguous(), w = w_.contiguous(), c = c_.contiguous();
    const bool f32 = r.scalar_type() == at::kFloat;
    const int64_t groups = w.size(1);
    Tensor out = f.invariants.take({n_atoms, groups, f.n_invariants}, r.options());
    Tensor T = moments ? f.moments.take({n_atoms, f.moments_width(groups, f32)}, r.options()) : Tensor();
    check_status(f, "forward", f32 ? run_forward<float>(f, r, w, c, n_atoms, out, T)
                                   : run_forward<double>(f, r, w, c, n_atoms, out, T));
    return {out, T};
}

Pair cpu_backward(Family& f, const Tensor& r_, const Tensor& w_, const Tensor& c_, int64_t n_atoms,
                  const Tensor& saved_, const Tensor& grad_out_)
{
    check_inputs(f, r_, w_, c_, n_atoms);
    const Tensor r = r_.contiguous(), w = w_.contiguous(), c = c_.contiguous();
    const bool f32 = r.scalar_type() == at::kFloat;
    const int64_t groups = w.size(1);
    check_like(f, "saved", saved_, r, {n_atoms, f.moments_width(groups, f32)});
    check_like(f, "grad_out", grad_out_, r, {n_atoms, groups, f.n_invariants});
    const Tensor saved = saved_.contiguous(), grad_out = grad_out_.contiguous();
    Tensor gr = f.grad_r.take(r.sizes(), r.options()), gw = f.grad_w.take(w.sizes(), w.options());
    check_status(f, "backward", f32 ? run_backward<float>(f, r, w, c, n_atoms, saved, grad_out, gr, gw)
                                    : run_backward<double>(f, r, w, c, n_atoms, saved, grad_out, gr, gw));
    return {gr, gw};
}

Triple cpu_double_backward(Family& f, const Tensor& r_, const Tensor& w_, const Tensor& c_, int64_t n_atoms,
                           const Tensor& grad_out_, const std::optional<Tensor>& ggr_,
                           const std::optional<Tensor>& ggw_)
{
    check_inputs(f, r_, w_, c_, n_atoms);
    const Tensor r = r_.contiguous(), w = w_.contiguous(), c = c_.contiguous();
    const bool f32 = r.scalar_type() == at::kFloat;
    const int64_t groups = w.size(1);
    check_like(f, "grad_out", grad_out_, r, {n_atoms, groups, f.n_invariants});
    const Tensor grad_out = grad_out_.contiguous();
    Tensor ggr, ggw;
    if (ggr_.has_value() && ggr_->defined()) { check_like(f, "grad_grad_r", *ggr_, r, r.sizes()); ggr = ggr_->contiguous(); }
    if (ggw_.has_value() && ggw_->defined()) { check_like(f, "grad_grad_w", *ggw_, r, w.sizes()); ggw = ggw_->contiguous(); }
    Tensor gr = f.grad_r.take(r.sizes(), r.options()), gw = f.grad_w.take(w.sizes(), w.options());
    Tensor ggI = f.invariants.take(grad_out.sizes(), r.options());
    check_status(f, "double_backward",
                 f32 ? run_double_backward<float>(f, r, w, c, n_atoms, grad_out, ggr, ggw, gr, gw, ggI)
                     : run_double_backward<double>(f, r, w, c, n_atoms, grad_out, ggr, ggw, gr, gw, ggI));
    return {gr, gw, ggI};
}

// ---- autograd: forward -> backward -> double backward, each step calling the next op through the dispatcher ---

struct ForwardFunction : torch::autograd::Function<ForwardFunction> {
    static variable_list forward(AutogradContext* ctx, const Tensor& r, const Tensor& w, const Tensor& centers,
                                 int64_t n_atoms, int64_t family_handle)
    {
        at::AutoDispatchBelowADInplaceOrView guard;
        auto [out, saved] = family(family_handle).forward_op.call(r, w, centers, n_atoms);
        ctx->save_for_backward({r, w, centers, saved});
        ctx->saved_data["n_atoms"] = n_atoms;
        ctx->saved_data["family"] = family_handle;
        ctx->mark_non_differentiable({saved});
        ctx->set_materialize_grads(false);  // else autograd zero-fills a saved-sized gradient on every call
        return {out, saved};
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads)
    {
        if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
        const auto s = ctx->get_saved_variables();
        auto [gr, gw] = family(ctx->saved_data["family"].toInt())
                            .backward_op.call(s[0], s[1], s[2], ctx->saved_data["n_atoms"].toInt(), s[3], grads[0]);
        return {gr, gw, Tensor(), Tensor(), Tensor()};
    }
};

struct BackwardFunction : torch::autograd::Function<BackwardFunction> {
    static variable_list forward(AutogradContext* ctx, const Tensor& r, const Tensor& w, const Tensor& centers,
                                 int64_t n_atoms, const Tensor& saved, const Tensor& grad_out, int64_t family_handle)
    {
        at::AutoDispatchBelowADInplaceOrView guard;
        auto [gr, gw] = family(family_handle).backward_op.call(r, w, centers, n_atoms, saved, grad_out);
        ctx->save_for_backward({r, w, centers, grad_out});
        ctx->saved_data["n_atoms"] = n_atoms;
        ctx->saved_data["family"] = family_handle;
        ctx->set_materialize_grads(false);
        return {gr, gw};
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads)
    {
        if (!grads[0].defined() && !grads[1].defined())
            return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
        const auto s = ctx->get_saved_variables();
        const auto optional = [](const Tensor& t) { return t.defined() ? std::optional<Tensor>(t) : std::nullopt; };
        auto [gr, gw, ggI] = family(ctx->saved_data["family"].toInt())
                                 .double_backward_op.call(s[0], s[1], s[2], ctx->saved_data["n_atoms"].toInt(), s[3],
                                                          optional(grads[0]), optional(grads[1]));
        // the saved moments are a function of (r, w): the double backward differentiates through them already
        return {gr, gw, Tensor(), Tensor(), Tensor(), ggI, Tensor()};
    }
};

// infer and double backward are not differentiable (as with Python's custom ops without a formula): an error when
// a gradient would be needed, else the kernel below autograd.
void refuse_gradient(const Family& f, const char* op, std::initializer_list<const Tensor*> inputs)
{
    if (!at::GradMode::is_enabled()) return;
    for (const Tensor* t : inputs)
        TORCH_CHECK(!(t->defined() && t->requires_grad()), f.name, "_", op,
                    " is not differentiable: call the forward op for a result you differentiate");
}

struct QuietWarnings : c10::WarningHandler {
    void process(const c10::Warning&) override {}
};

}  // namespace

extern "C" {

// Registers the CPU and Autograd kernels of the op family "<ns>::<prefix>_{forward,infer,backward,double_backward}"
// (defined beforehand, by ops.py). entries: forward, backward, double_backward for float32, then for float64;
// sizes: channels, n_coords, n_invariants, float32 lanes, float64 lanes; errors: the messages of statuses -1 .. -4,
// about_data: whether each is about the data (raised as ValueError); error_prefix: how each such message begins.
// Returns 0, or -1 with the reason in `error` (at most error_len bytes, NUL-terminated).
int cartinv_attach_family(const char* ns, const char* prefix, void* const* entries, const int64_t* sizes,
                          const char* const* errors, const int* about_data, const char* error_prefix, char* error,
                          int64_t error_len)
{
    try {
        std::lock_guard<std::mutex> lock(registry_mutex);
        const std::string base = std::string(ns) + "::" + prefix;
        auto& dispatcher = c10::Dispatcher::singleton();
        auto f = std::unique_ptr<Family>(new Family{
            base,
            {reinterpret_cast<decltype(Entries<float>::forward)>(entries[0]),
             reinterpret_cast<decltype(Entries<float>::backward)>(entries[1]),
             reinterpret_cast<decltype(Entries<float>::double_backward)>(entries[2])},
            {reinterpret_cast<decltype(Entries<double>::forward)>(entries[3]),
             reinterpret_cast<decltype(Entries<double>::backward)>(entries[4]),
             reinterpret_cast<decltype(Entries<double>::double_backward)>(entries[5])},
            sizes[0], sizes[1], sizes[2], sizes[3], sizes[4],
            error_prefix,
            {errors[0], errors[1], errors[2], errors[3]},
            {about_data[0] != 0, about_data[1] != 0, about_data[2] != 0, about_data[3] != 0},
            {}, {}, {}, {},
            dispatcher.findSchemaOrThrow((base + "_forward").c_str(), "").typed<ForwardOp>(),
            dispatcher.findSchemaOrThrow((base + "_infer").c_str(), "").typed<InferOp>(),
            dispatcher.findSchemaOrThrow((base + "_backward").c_str(), "").typed<BackwardOp>(),
            dispatcher.findSchemaOrThrow((base + "_double_backward").c_str(), "").typed<DoubleBackwardOp>()});
        Family* F = f.get();
        const int64_t family_handle = handle(F);
        families.push_back(std::move(f));
        const std::string p = prefix;

        // these replace the kernels Python registered for the same keys; torch warns once about that, on purpose
        QuietWarnings quiet;
        c10::WarningUtils::WarningHandlerGuard guard(&quiet);
        auto cpu = std::make_unique<torch::Library>(torch::Library::IMPL, ns, c10::DispatchKey::CPU, __FILE__, __LINE__);
        cpu->impl((p + "_forward").c_str(), [F](const Tensor& r, const Tensor& w, const Tensor& c, int64_t n) {
            return cpu_forward(*F, r, w, c, n, true);
        });
        cpu->impl((p + "_infer").c_str(), [F](const Tensor& r, const Tensor& w, const Tensor& c, int64_t n) {
            return std::get<0>(cpu_forward(*F, r, w, c, n, false));
        });
        cpu->impl((p + "_backward").c_str(), [F](const Tensor& r, const Tensor& w, const Tensor& c, int64_t n,
                                                 const Tensor& saved, const Tensor& grad_out) {
            return cpu_backward(*F, r, w, c, n, saved, grad_out);
        });
        cpu->impl((p + "_double_backward").c_str(),
                  [F](const Tensor& r, const Tensor& w, const Tensor& c, int64_t n, const Tensor& grad_out,
                      const std::optional<Tensor>& ggr, const std::optional<Tensor>& ggw) {
                      return cpu_double_backward(*F, r, w, c, n, grad_out, ggr, ggw);
                  });
        auto autograd = std::make_unique<torch::Library>(torch::Library::IMPL, ns, c10::DispatchKey::Autograd,
                                                         __FILE__, __LINE__);
        autograd->impl((p + "_forward").c_str(), [family_handle](const Tensor& r, const Tensor& w, const Tensor& c, int64_t n) {
            auto out = ForwardFunction::apply(r, w, c, n, family_handle);
            return Pair(out[0], out[1]);
        });
        autograd->impl((p + "_backward").c_str(), [family_handle](const Tensor& r, const Tensor& w, const Tensor& c, int64_t n,
                                                          const Tensor& saved, const Tensor& grad_out) {
            auto out = BackwardFunction::apply(r, w, c, n, saved, grad_out, family_handle);
            return Pair(out[0], out[1]);
        });
        autograd->impl((p + "_infer").c_str(), [F](const Tensor& r, const Tensor& w, const Tensor& c, int64_t n) {
            refuse_gradient(*F, "infer", {&r, &w});
            at::AutoDispatchBelowADInplaceOrView below;
            return F->infer_op.call(r, w, c, n);
        });
        autograd->impl((p + "_double_backward").c_str(),
                       [F](const Tensor& r, const Tensor& w, const Tensor& c, int64_t n, const Tensor& grad_out,
                           const std::optional<Tensor>& ggr, const std::optional<Tensor>& ggw) {
                           const Tensor none;
                           refuse_gradient(*F, "double_backward",
                                           {&r, &w, &grad_out, ggr.has_value() ? &*ggr : &none,
                                            ggw.has_value() ? &*ggw : &none});
                           at::AutoDispatchBelowADInplaceOrView below;
                           return F->double_backward_op.call(r, w, c, n, grad_out, ggr, ggw);
                       });
        libraries.push_back(std::move(cpu));
        libraries.push_back(std::move(autograd));
        return 0;
    } catch (const std::exception& exc) {
        if (error != nullptr && error_len > 0) {
            const std::string what = exc.what();
            const size_t n = std::min(size_t(error_len - 1), what.find('\n') == std::string::npos ? what.size()
                                                                                                   : what.find('\n'));
            what.copy(error, n);
            error[n] = '\0';
        }
        return -1;
    }
}

// Drops the output memory every family keeps for reuse (what tensors still hold stays alive).
void cartinv_release_buffers()
{
    std::lock_guard<std::mutex> lock(registry_mutex);
    for (auto& f : families) {
        f->invariants.clear();
        f->moments.clear();
        f->grad_r.clear();
        f->grad_w.clear();
    }
}

// How many storages the pools of all families hold (for the tests).
int64_t cartinv_held_buffers()
{
    std::lock_guard<std::mutex> lock(registry_mutex);
    int64_t n = 0;
    for (auto& f : families) n += int64_t(f->invariants.size() + f->moments.size() + f->grad_r.size() + f->grad_w.size());
    return n;
}

}  // extern "C"
