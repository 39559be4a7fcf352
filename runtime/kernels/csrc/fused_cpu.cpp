// cartinv fused CPU kernels: forward, backward and double backward of one Basis in one pass over atoms.
//
// Hand-written and basis-independent; compiled once per Basis together with its generated header, which
// supplies only the maths that depends on the basis: harmonics, harmonics_vjp, invariants, invariants_vjp
// (straight-line templates over scalar_t). Build (done by cartinv.runtime.kernels.cpu_backend):
//
//   g++ -O3 -std=c++17 -shared -fPIC -pthread -DCARTINV_BASIS_NS=<namespace> -include <name>.h fused_cpu.cpp
//
// Data layout (the same as every other cartinv backend):
//   r [P][3], centers [P] (int64), w [P][G][CHANNELS], I [n_atoms][G][N_INVARIANTS].
// Private layout of the saved moments: T [n_atoms][blocks][N_COORDS][LANES], groups in blocks of LANES.
//
// Design:
//  - atoms run in parallel (a pool of worker threads kept between calls, which take shrinking ranges of atoms as
//    they finish the last; scratch rows set up once per thread and call); every pair belongs to
//    exactly one atom, so each output element is written by one thread and results do not depend on the thread
//    count;
//  - groups are the SIMD dimension: the generated programs are instantiated on a LANES-wide vector type, so
//    one call evaluates LANES groups of an atom at once;
//  - the double backward (what training on forces needs) is the backward run on dual numbers
//    (value + tangent along the incoming gradient): the tangent of the invariants is the gradient with respect
//    to the invariant gradient, the tangent of the pair gradients is the Hessian-vector product. The same
//    generated programs, no other derivative code;
//  - the backward passes need gY[j] = sum over groups of gT[j] w per pair: gT is transposed once per atom so that
//    lanes run over harmonics there (no sums across lanes), and every inner loop keeps 8 or more independent FMA
//    chains (pairs x blocks), since one chain waits out the FMA latency.
// Every entry point returns 0, or a negative code: -1 a centre outside 0..n_atoms-1, -2 a bad size argument;
// the forward also checks the values as it reads them (at no measurable cost): -3 a pair vector of zero length
// or with a squared length that is not finite (NaN, inf, overflow), -4 a moment that is not finite (NaN or inf
// in w, or an overflow). The caller turns a code into a message naming the element.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#ifndef CARTINV_BASIS_NS
#error "compile with -DCARTINV_BASIS_NS=<namespace of the generated header> -include <header>"
#endif

// Lane width in bytes: the native SIMD register (64 with AVX-512, 32 with AVX2, 16 otherwise), set by the build.
#ifndef CARTINV_LANE_BYTES
#define CARTINV_LANE_BYTES 32
#endif

namespace fused {

namespace B = cartinv::CARTINV_BASIS_NS;

constexpr int CH = B::CHANNELS;
constexpr int NH = B::N_HARMONICS;
constexpr int NC = B::N_COORDS;
constexpr int NI = B::N_INVARIANTS;
// Harmonics accumulated in registers at once: half the vector registers (16 with AVX2, 32 with AVX-512), so
// the accumulators, a weight vector and the broadcast harmonics never spill to the stack.
constexpr int J_TILE = CARTINV_LANE_BYTES >= 64 ? 16 : 8;

// ---------------------------------------------------------------------------------------------------------
// Lane vectors (one SIMD register of float or double) and dual numbers over any arithmetic type.

template <typename S>
struct LaneType {
    typedef S type __attribute__((vector_size(CARTINV_LANE_BYTES)));
    static constexpr int width = CARTINV_LANE_BYTES / int(sizeof(S));
};

template <typename S>
struct Vec {
    typedef typename LaneType<S>::type raw;
    static constexpr int W = LaneType<S>::width;
    raw x;
    Vec() = default;
    explicit Vec(raw v) : x(v) {}
    explicit Vec(double s) { x = raw{} + S(s); }
};
template <typename S> inline Vec<S> operator+(Vec<S> a, Vec<S> b) { return Vec<S>(a.x + b.x); }
template <typename S> inline Vec<S> operator-(Vec<S> a, Vec<S> b) { return Vec<S>(a.x - b.x); }
template <typename S> inline Vec<S> operator*(Vec<S> a, Vec<S> b) { return Vec<S>(a.x * b.x); }
template <typename S> inline Vec<S> operator-(Vec<S> a) { return Vec<S>(-a.x); }
template <typename S> inline Vec<S> scale(Vec<S> a, S s) { return Vec<S>(a.x * s); }
template <typename T>
struct Dual {
    T v, d;
    Dual() = default;
    Dual(T value, T tangent) : v(value), d(tangent) {}
    explicit Dual(double s) : v(T(s)), d(T(0.0)) {}
};
// Dual operands pass by reference: passed by value, GCC keeps the generated programs' dual temporaries as whole
// aggregates on the stack (lmax4_deg4's dual VJP on AVX-512 doubles: 36,079 instructions and a 413 KB frame by
// value, 14,578 and 44 KB by reference; its double backward on a 144-atom batch 7.7 -> 3.6 ms).
template <typename T> inline Dual<T> operator+(const Dual<T>& a, const Dual<T>& b) { return Dual<T>(a.v + b.v, a.d + b.d); }
template <typename T> inline Dual<T> operator-(const Dual<T>& a, const Dual<T>& b) { return Dual<T>(a.v - b.v, a.d - b.d); }
template <typename T> inline Dual<T> operator*(const Dual<T>& a, const Dual<T>& b) { return Dual<T>(a.v * b.v, a.v * b.d + a.d * b.v); }
template <typename T> inline Dual<T> operator-(const Dual<T>& a) { return Dual<T>(-a.v, -a.d); }

// Lanes times a pair scalar.
template <typename S> inline Vec<S> mul(Vec<S> a, S s) { return scale(a, s); }

inline double inv_sqrt(double x) { return 1.0 / std::sqrt(x); }
inline float inv_sqrt(float x) { return 1.0f / std::sqrt(x); }

// ---------------------------------------------------------------------------------------------------------
// W x W transpose of W lane vectors in registers. Writing the lanes one at a time and reading them back as whole
// vectors instead stalls every read on store forwarding: with these transposes in place of two such loops (gY per
// batch of pairs, gT per atom) the backward went from 3.5-3.6 to 3.1-3.3 ms (2,000 atoms, fp32, AVX-512).
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define CARTINV_HAS_SHUFFLEVECTOR 1
#endif
#endif

#ifdef CARTINV_HAS_SHUFFLEVECTOR
// Swaps the H x H blocks off the diagonal of rows (a, b): a's lanes with bit H set take b's lanes j - H, b's lanes
// without it take a's lanes j + H.
template <int H, typename R, std::size_t... J>
inline void swap_blocks(R& a, R& b, std::index_sequence<J...>)
{
    constexpr int W = int(sizeof...(J));
    const R lo = __builtin_shufflevector(a, b, ((int(J) & H) == 0 ? int(J) : W + int(J) - H)...);
    const R hi = __builtin_shufflevector(a, b, ((int(J) & H) == 0 ? int(J) + H : W + int(J))...);
    a = lo;
    b = hi;
}

// One swap per bit of the row and lane index: after all of them, lane j of row i holds what lane i of row j held.
template <typename S, int H>
inline void transpose_from(Vec<S> (&m)[Vec<S>::W])
{
    constexpr int W = Vec<S>::W;
    if constexpr (H < W) {
        for (int i = 0; i < W; ++i) {
            if ((i & H) == 0) swap_blocks<H>(m[i].x, m[i + H].x, std::make_index_sequence<W>());
        }
        transpose_from<S, 2 * H>(m);
    }
}
#endif

template <typename S>
inline void transpose(Vec<S> (&m)[Vec<S>::W])
{
#ifdef CARTINV_HAS_SHUFFLEVECTOR
    transpose_from<S, 1>(m);
#else
    constexpr int W = Vec<S>::W;
    Vec<S> t[W];
    for (int i = 0; i < W; ++i) {
        for (int j = 0; j < W; ++j) t[j].x[i] = m[i].x[j];
    }
    for (int i = 0; i < W; ++i) m[i] = t[i];
#endif
}

// One block's and channel's harmonics (harmonic(j), lanes over the block's groups) as rows of lanes over harmonics,
// one per group: out[l * stride + jv] holds harmonics jv W .. jv W + W - 1 of group l, for the n groups l < n.
template <typename S, typename Harmonic>
inline void to_harmonic_lanes(Harmonic harmonic, int n, Vec<S>* out, int64_t stride)
{
    constexpr int W = Vec<S>::W;
    for (int jv = 0; jv * W < NH; ++jv) {
        Vec<S> m[W];
        for (int i = 0; i < W; ++i) m[i] = jv * W + i < NH ? harmonic(jv * W + i) : Vec<S>(0.0);
        transpose<S>(m);
        for (int l = 0; l < n; ++l) out[l * stride + jv] = m[l];
    }
}

// ---------------------------------------------------------------------------------------------------------
// Loads and stores of one block of lanes (groups g0 .. g0 + n - 1) with a stride between groups. A partial block
// (n < W: the last block when W does not divide the groups) runs a fixed-length loop over the lanes: written as a
// loop up to n, the compiler turns it into a call to memcpy inside the hot loops, spilling every accumulator
// around the call (measured: 38% of the forward with one group).

template <typename S>
inline Vec<S> load(const S* p, int64_t stride, int n)
{
    Vec<S> v;
    if (stride == 1 && n == Vec<S>::W) {
        std::memcpy(&v.x, p, sizeof(v.x));
        return v;
    }
    for (int i = 0; i < Vec<S>::W; ++i) v.x[i] = i < n ? p[i * stride] : S(0);
    return v;
}
template <typename S>
inline void store(S* p, int64_t stride, int n, Vec<S> v)
{
    if (stride == 1 && n == Vec<S>::W) {
        std::memcpy(p, &v.x, sizeof(v.x));
        return;
    }
    for (int i = 0; i < Vec<S>::W; ++i) {
        if (i < n) p[i * stride] = v.x[i];
    }
}

// Invariant rows <-> lanes over groups. I and gI hold [group][N_INVARIANTS] rows while the programs see one lane
// vector per invariant (lanes over a block's groups); W x W transposes in registers replace the per-lane loads and
// stores at stride N_INVARIANTS, which had cost about 10 % of a forward + backward (20,000 atoms, fp32, AVX-512:
// 60 -> 54 ms with both gone).

// out[g * NI + k] = v[k] lane g for the n groups g < n. Whole-vector stores: each row's last chunk runs up to W - 1
// values past the row's end, so `out` needs W values of room after row n - 1; the last chunk is written first
// (rows in increasing order), so the values it runs over are then overwritten by their own row's stores.
template <typename S>
inline void lanes_to_rows(const Vec<S>* v, int n, S* out)
{
    constexpr int W = Vec<S>::W;
    for (int k0 = ((NI - 1) / W) * W; k0 >= 0; k0 -= W) {
        Vec<S> m[W];
        for (int i = 0; i < W; ++i) m[i] = k0 + i < NI ? v[k0 + i] : Vec<S>(0.0);
        transpose<S>(m);
        for (int g = 0; g < n; ++g) std::memcpy(out + g * NI + k0, &m[g].x, sizeof(m[g].x));
    }
}

// v[k] lane g = in[g * NI + k] for the n groups g < n (0 in the other lanes). Whole-vector loads may read into the
// next row, whose values land in lanes that are not kept; a row whose vector would pass `end` (the end of the
// array) is loaded value by value.
template <typename S>
inline void rows_to_lanes(const S* in, int n, const S* end, Vec<S>* v)
{
    constexpr int W = Vec<S>::W;
    for (int k0 = 0; k0 < NI; k0 += W) {
        Vec<S> m[W];
        for (int g = 0; g < W; ++g) {
            const S* p = in + g * NI + k0;
            if (g >= n) {
                m[g] = Vec<S>(0.0);
            } else if (end - p >= W) {
                std::memcpy(&m[g].x, p, sizeof(m[g].x));
            } else {
                m[g] = load(p, 1, int(std::min<int64_t>(W, NI - k0)));
            }
        }
        transpose<S>(m);
        for (int i = 0; i < W && k0 + i < NI; ++i) v[k0 + i] = m[i];
    }
}

// The generated programs, each compiled once per type as its own function (not inlined into the loops: the
// straight-line code stays one basic block, which keeps compile time and register pressure down).
template <typename X>
__attribute__((noinline)) void invariants_of(const X* T, X* I) { B::invariants(T, I); }
template <typename X>
__attribute__((noinline)) void invariants_vjp_of(const X* T, const X* gI, X* gT) { B::invariants_vjp(T, gI, gT); }

// Up to W pairs of one atom at once, the pairs in the lanes: the harmonics and their VJP run as vector code
// (the per-pair scalar work would otherwise cost as much as the per-group products).
template <typename S>
struct PairBatch {
    typedef Vec<S> V;
    static constexpr int W = V::W;
    int n = 0;
    int64_t pairs[W];
    V u[3], inv_length;
    alignas(64) S Y[NH][W];  // Y[j][k]: harmonic j of the k-th pair of the batch

    // Loads pairs q .. min(q + W, end) - 1 of the index; false when one has a zero or non-finite squared length.
    template <typename Index>
    bool load(const S* r, const Index& index, int64_t q, int64_t end)
    {
        n = int(std::min<int64_t>(W, end - q));
        V rv[3] = {V(1.0), V(0.0), V(0.0)};  // idle lanes hold a unit vector
        for (int k = 0; k < n; ++k) {
            pairs[k] = index.pair(q + k);
            for (int c = 0; c < 3; ++c) rv[c].x[k] = r[3 * pairs[k] + c];
        }
        const V rr = rv[0] * rv[0] + rv[1] * rv[1] + rv[2] * rv[2];
        // two branch-free loops over the lanes, so the compiler vectorises them (one vector sqrt and divide)
        bool usable = true;
        for (int k = 0; k < W; ++k) usable &= (rr.x[k] > S(0)) & (rr.x[k] <= std::numeric_limits<S>::max());
        for (int k = 0; k < W; ++k) inv_length.x[k] = inv_sqrt(rr.x[k]);
        for (int c = 0; c < 3; ++c) u[c] = rv[c] * inv_length;
        V Yv[NH];
        B::harmonics(u[0], u[1], u[2], Yv);
        for (int j = 0; j < NH; ++j) std::memcpy(Y[j], &Yv[j].x, sizeof(Yv[j].x));
        return usable;
    }

    // gr of the batch's pairs from gY[j] (lanes over the pairs, as in Y).
    void gradient(const V* gY, S* gr) const
    {
        V gu[3];
        B::harmonics_vjp(u[0], u[1], u[2], gY, gu);
        const V radial = u[0] * gu[0] + u[1] * gu[1] + u[2] * gu[2];
        for (int c = 0; c < 3; ++c) {
            const V g = (gu[c] - u[c] * radial) * inv_length;
            for (int k = 0; k < n; ++k) gr[3 * pairs[k] + c] = g.x[k];
        }
    }
};

// The same batch on dual numbers (value, tangent along the incoming ggr): the double backward's geometry.
template <typename S>
struct DualPairBatch {
    typedef Vec<S> V;
    typedef Dual<V> DV;
    static constexpr int W = V::W;
    int n = 0;
    int64_t pairs[W];
    DV u[3], inv_length;
    alignas(64) S Yv[NH][W];  // values of the harmonics
    alignas(64) S Yd[NH][W];  // their tangents

    template <typename Index>
    void load(const S* r, const S* ggr, const Index& index, int64_t q, int64_t end)
    {
        n = int(std::min<int64_t>(W, end - q));
        DV rv[3] = {DV(V(1.0), V(0.0)), DV(V(0.0), V(0.0)), DV(V(0.0), V(0.0))};  // idle lanes: a unit vector
        for (int k = 0; k < n; ++k) {
            pairs[k] = index.pair(q + k);
            for (int c = 0; c < 3; ++c) {
                rv[c].v.x[k] = r[3 * pairs[k] + c];
                rv[c].d.x[k] = ggr ? ggr[3 * pairs[k] + c] : S(0);
            }
        }
        const DV rr = rv[0] * rv[0] + rv[1] * rv[1] + rv[2] * rv[2];
        V value;
        for (int k = 0; k < W; ++k) value.x[k] = inv_sqrt(rr.v.x[k]);
        inv_length = DV(value, V(-0.5) * rr.d * value * value * value);
        for (int c = 0; c < 3; ++c) u[c] = rv[c] * inv_length;
        DV Y[NH];
        B::harmonics(u[0], u[1], u[2], Y);
        for (int j = 0; j < NH; ++j) {
            std::memcpy(Yv[j], &Y[j].v.x, sizeof(Y[j].v.x));
            std::memcpy(Yd[j], &Y[j].d.x, sizeof(Y[j].d.x));
        }
    }

    // The tangent of gr (the Hessian-vector product along ggr, gw's tangent and gI) from the dual gY.
    void gradient_tangent(const V* gYv, const V* gYd, S* out) const
    {
        DV gY[NH], gu[3];
        for (int j = 0; j < NH; ++j) gY[j] = DV(gYv[j], gYd[j]);
        B::harmonics_vjp(u[0], u[1], u[2], gY, gu);
        const DV radial = u[0] * gu[0] + u[1] * gu[1] + u[2] * gu[2];
        for (int c = 0; c < 3; ++c) {
            const DV g = (gu[c] - u[c] * radial) * inv_length;
            for (int k = 0; k < n; ++k) out[3 * pairs[k] + c] = g.d.x[k];
        }
    }
};

// ---------------------------------------------------------------------------------------------------------
// Threads.

// Worker threads kept between calls: starting and joining threads on every call cost ~0.1 ms here, as much as
// the forward of 200 atoms. One parallel region at a time; a call that finds the pool busy (another Python thread
// inside a kernel: ctypes releases the GIL) starts threads of its own instead. A child process after fork() has
// none of the parent's threads, so the pool belongs to the process that made it.
// Waking a sleeping worker through the condition variable took 25-50 us on a 2-vCPU cloud machine, and a kernel
// runs up to three regions (index check, offsets, atoms), ~10 % of a 2,000-atom forward; so a worker that has
// finished a job, and the caller waiting for its workers, spin for up to SPIN_US before they sleep.
class WorkerPool {
public:
    static constexpr int64_t SPIN_US = 200;
    static constexpr int WANTED_BITS = 20;  // state_: generation << WANTED_BITS | workers wanted

    static WorkerPool& get()
    {
        static std::mutex made;
        static WorkerPool* pool = nullptr;
        std::lock_guard<std::mutex> lock(made);
        if (pool == nullptr || pool->pid_ != getpid()) pool = new WorkerPool();  // never freed: workers run until exit
        return *pool;
    }

    // work() on the caller's thread and on `helpers` workers; false (nothing run) when the pool is busy.
    bool run(int helpers, const std::function<void()>& work)
    {
        if (helpers >= (1 << WANTED_BITS)) return false;  // more threads than the state word counts: own threads
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (!busy.owns_lock()) return false;
        while (int(workers_.size()) < helpers) {
            const int id = int(workers_.size());
            workers_.emplace_back([this, id]() { loop(id); });
            workers_.back().detach();
        }
        {
            // job_ and running_ are published by the release store of state_, which holds the generation and the
            // number of workers wanted in one word: a worker must never pair one job's generation with another's
            // count (with separate words, a worker left out of one job could read the next job's count with the
            // old generation and run that job before running_ was set). Stored under the mutex so that a worker
            // checking the predicate before it sleeps cannot miss it.
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &work;
            running_.store(helpers, std::memory_order_relaxed);
            const uint64_t generation = (state_.load(std::memory_order_relaxed) >> WANTED_BITS) + 1;
            state_.store((generation << WANTED_BITS) | uint64_t(helpers), std::memory_order_release);
        }
        start_.notify_all();
        work();
        if (!spin_until([this]() { return running_.load(std::memory_order_acquire) == 0; })) {
            std::unique_lock<std::mutex> lock(mutex_);
            done_.wait(lock, [this]() { return running_.load(std::memory_order_acquire) == 0; });
        }
        return true;
    }

private:
    WorkerPool() : pid_(getpid()) {}

    static void pause()
    {
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
    }

    // Polls ready() for up to SPIN_US (the clock read every 64 polls); whether it became true.
    template <typename F>
    static bool spin_until(F ready)
    {
        const auto stop = std::chrono::steady_clock::now() + std::chrono::microseconds(SPIN_US);
        for (int k = 1;; ++k) {
            if (ready()) return true;
            pause();
            if ((k & 63) == 0 && std::chrono::steady_clock::now() > stop) return ready();
        }
    }

    void loop(int id)
    {
        uint64_t seen = 0, state = 0;
        const auto ready = [&]() {
            state = state_.load(std::memory_order_acquire);
            return (state >> WANTED_BITS) != seen && uint64_t(id) < (state & ((uint64_t(1) << WANTED_BITS) - 1));
        };
        for (;;) {
            if (!spin_until(ready)) {
                std::unique_lock<std::mutex> lock(mutex_);
                start_.wait(lock, ready);
            }
            seen = state >> WANTED_BITS;  // the generation ready() saw: this worker is counted in its running_
            (*job_)();
            if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                // under the mutex: a caller that saw running_ > 0 and is going to sleep is then already waiting
                std::lock_guard<std::mutex> lock(mutex_);
                done_.notify_one();
            }
        }
    }

    const pid_t pid_;
    std::mutex busy_, mutex_;
    std::condition_variable start_, done_;
    std::vector<std::thread> workers_;
    const std::function<void()>* job_ = nullptr;
    std::atomic<uint64_t> state_{0};
    std::atomic<int> running_{0};
};

// The ranges of 0 .. n - 1 that one thread takes, handed out dynamically from a counter shared by the threads
// (null: one thread, which takes 0 .. n - 1 at once). A range holds what is left divided by `spread`, at least
// `chunk` items (spread 0: always `chunk`): large ranges first, small ones at the end to even out the threads.
class Chunks {
public:
    Chunks(int64_t n, int64_t chunk, int64_t spread, std::atomic<int64_t>* shared)
        : n_(n), chunk_(chunk), spread_(spread), shared_(shared)
    {
    }

    // The next range [begin, end) for this thread; false when none is left.
    bool take(int64_t& begin, int64_t& end)
    {
        if (shared_ == nullptr) {
            if (taken_ || n_ == 0) return false;
            taken_ = true;
            begin = 0;
            end = n_;
            return true;
        }
        int64_t at = shared_->load(std::memory_order_relaxed);
        for (;;) {
            if (at >= n_) return false;
            const int64_t size = spread_ > 0 ? std::max(chunk_, (n_ - at) / spread_) : chunk_;
            if (shared_->compare_exchange_weak(at, at + size, std::memory_order_relaxed)) {
                begin = at;
                end = std::min(n_, at + size);
                return true;
            }
        }
    }

private:
    const int64_t n_, chunk_, spread_;
    std::atomic<int64_t>* const shared_;
    bool taken_ = false;
};

// work(chunks) once on each of n_threads threads (the caller's included), each taking ranges of 0 .. n - 1 from
// its Chunks (see there for `chunk` and `spread`) until none is left: what a thread sets up (scratch rows) it
// sets up once per call, not once per range.
template <typename F>
void parallel_chunks(int64_t n, int64_t chunk, int64_t spread, int n_threads, F work)
{
    const int64_t chunks = (n + chunk - 1) / chunk;
    n_threads = int(std::max<int64_t>(1, std::min<int64_t>(n_threads, chunks)));
    if (n_threads == 1) {
        Chunks all(n, chunk, 0, nullptr);
        work(all);
        return;
    }
    std::atomic<int64_t> next(0);
    const std::function<void()> worker = [&]() {
        Chunks mine(n, chunk, spread, &next);
        work(mine);
    };
    if (WorkerPool::get().run(n_threads - 1, worker)) return;
    std::vector<std::thread> threads;
    for (int t = 1; t < n_threads; ++t) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
}

// body(begin, end) over ranges of `chunk` items of 0 .. n - 1 on n_threads threads, handed out dynamically.
template <typename F>
void parallel_ranges(int64_t n, int64_t chunk, int n_threads, F body)
{
    parallel_chunks(n, chunk, 0, n_threads, [&](Chunks& chunks) {
        for (int64_t begin, end; chunks.take(begin, end);) body(begin, end);
    });
}

// Atoms in ranges of what is left over twice the threads, at least 8 atoms (the work per atom varies with its pair
// count, so the ranges shrink towards the end). Against ranges of 8 throughout, forward + backward on 2 threads
// (fp32) went from 3.1-3.3 to 3.0-3.1 ms at 2,000 atoms and from 29.4-30.4 to 27.8-28.2 ms at 20,000: each range
// starts its pair data cold, its prefetches past the end fetch another thread's, and rows of neighbouring atoms
// that share a cache line are written by one thread rather than two.
template <typename F>
void parallel_atoms(int64_t n_atoms, int n_threads, F work)
{
    parallel_chunks(n_atoms, 8, 2 * int64_t(n_threads), n_threads, work);
}

// ---------------------------------------------------------------------------------------------------------
// Software prefetch and streaming stores. On a 2026 cloud Xeon (AVX-512, about 11 GB/s of memory bandwidth
// per core) a scalar stream read ran at 2.7 GB/s with plain loads and 8.2 GB/s with a prefetch 2-8 KiB ahead,
// so the pair data (w rows, r) is prefetched PREFETCH_BYTES ahead of its use (addresses clamped to the arrays);
// the 20,000-atom fp32 forward went from 28.9 to 24.2 ms with it on that host.

constexpr int64_t PREFETCH_BYTES = 4096;
constexpr int64_t LINE = 64;

// As an asm statement on x86: GCC 12 deletes loops whose only statements are __builtin_prefetch calls.
inline void prefetch(const void* p)
{
#if defined(__x86_64__) || defined(__i386__)
    asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
    __builtin_prefetch(p, 0, 3);
#endif
}

// Every cache line of bytes [p, p + n), n > 0.
inline void prefetch_span(const void* p, int64_t n)
{
    const char* c = static_cast<const char*>(p);
    const int64_t lines = ((reinterpret_cast<uintptr_t>(c) & (LINE - 1)) + n + LINE - 1) / LINE;
    for (int64_t k = 0; k < lines; ++k) prefetch(c + k * LINE);
}

// Spans of memory to prefetch one line per call (next()), so that a whole row's prefetches spread over the work
// in between; flush() issues what is left.
struct LineFeed {
    const char* at[2] = {nullptr, nullptr};
    const char* stop[2] = {nullptr, nullptr};
    int n = 0;
    void reset() { n = 0; }
    void add(const void* p, int64_t bytes)
    {
        const char* c = static_cast<const char*>(p);
        at[n] = c - (reinterpret_cast<uintptr_t>(c) & (LINE - 1));
        stop[n] = c + bytes;
        ++n;
    }
    void next()
    {
        for (int k = 0; k < n; ++k) {
            if (at[k] < stop[k]) {
                prefetch(at[k]);
                at[k] += LINE;
                return;
            }
        }
    }
    void flush()
    {
        for (int k = 0; k < n; ++k) {
            for (; at[k] < stop[k]; at[k] += LINE) prefetch(at[k]);
        }
    }
};

// Copies n values to memory that is not read again soon, of any alignment: streaming stores for the cache lines
// it covers whole, which skip reading the line first as a plain store does (half the traffic of writing a large
// output; through the invariants, the 20,000-atom forward went from 24.2 to 18.6 ms), and plain stores for a
// partial line at either end (which a neighbouring atom's row may share). Threads that streamed call
// stream_fence() before they finish.
template <typename S>
inline void stream_copy_values(S* to, const S* from, int64_t n)
{
    const int64_t per_line = LINE / int64_t(sizeof(S));
    int64_t head = int64_t((LINE - (reinterpret_cast<uintptr_t>(to) & (LINE - 1))) & (LINE - 1)) / int64_t(sizeof(S));
    if (reinterpret_cast<uintptr_t>(to) % sizeof(S) != 0 || head > n) head = n;
    std::memcpy(to, from, head * sizeof(S));
    const int64_t lines = (n - head) / per_line;
    for (int64_t k = 0; k < lines; ++k) {
        const S* src = from + head + k * per_line;
        S* dst = to + head + k * per_line;
#if defined(__AVX512F__)
        _mm512_stream_si512(reinterpret_cast<__m512i*>(dst), _mm512_loadu_si512(src));
#elif defined(__AVX__)
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst) + 1,
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src) + 1));
#else
        std::memcpy(dst, src, LINE);
#endif
    }
    const int64_t done = head + lines * per_line;
    std::memcpy(to + done, from + done, (n - done) * sizeof(S));
}

// One lane vector streamed straight from its register to a whole cache line (AVX-512: a vector is a line);
// false, storing nothing, where the vector is not a line or `at` does not start one.
template <typename S>
inline bool stream_line(S* at, Vec<S> v)
{
#if defined(__AVX512F__)
    if constexpr (sizeof(v.x) == LINE) {
        if ((reinterpret_cast<uintptr_t>(at) & (LINE - 1)) == 0) {
            _mm512_stream_si512(reinterpret_cast<__m512i*>(at), reinterpret_cast<__m512i>(v.x));
            return true;
        }
    }
#endif
    (void)at;
    (void)v;
    return false;
}

// Orders this thread's streaming stores before whatever it does next (streaming stores are weakly ordered).
inline void stream_fence()
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

// ---------------------------------------------------------------------------------------------------------
// Pairs grouped by centre (counting sort; identity when the centres are already sorted).

struct PairIndex {
    std::vector<int64_t> offsets;  // [n_atoms + 1]
    std::vector<int64_t> order;    // empty when the pairs are already sorted by centre
    int64_t pair(int64_t q) const { return order.empty() ? q : order[q]; }
};

inline int build_index(const int64_t* centers, int64_t n_pairs, int64_t n_atoms, PairIndex& index, int n_threads)
{
    // one parallel pass checks the range and the order; sorted centres (the usual case: neighbour lists come
    // grouped by centre) then give the offsets in a second parallel pass, each written by the chunk that holds
    // the step to it; otherwise a serial counting sort
    const int64_t chunk = 1 << 15;
    std::atomic<bool> bad(false), sorted(true);
    parallel_ranges(n_pairs, chunk, n_threads, [&](int64_t begin, int64_t end) {
        // branch-free, in loops the compiler vectorises: a centre out of range, a step down
        const uint64_t limit = uint64_t(n_atoms);
        int64_t out = 0, down = 0;
        for (int64_t p = begin; p < end; ++p) out |= uint64_t(centers[p]) >= limit;
        for (int64_t p = std::max<int64_t>(begin, 1); p < end; ++p) down |= centers[p] < centers[p - 1];
        if (out) bad.store(true, std::memory_order_relaxed);
        if (down) sorted.store(false, std::memory_order_relaxed);
    });
    if (bad.load()) return -1;
    index.offsets.resize(n_atoms + 1);
    int64_t* offsets = index.offsets.data();
    if (sorted.load()) {
        if (n_pairs == 0) {
            std::fill(offsets, offsets + n_atoms + 1, 0);
            return 0;
        }
        // offsets[a] = the first pair whose centre is >= a
        std::fill(offsets, offsets + centers[0] + 1, 0);
        std::fill(offsets + centers[n_pairs - 1] + 1, offsets + n_atoms + 1, n_pairs);
        parallel_ranges(n_pairs, chunk, n_threads, [&](int64_t begin, int64_t end) {
            const auto steps_at = [&](int64_t p) {
                for (int64_t a = centers[p - 1] + 1; a <= centers[p]; ++a) offsets[a] = p;
            };
            int64_t p = std::max<int64_t>(begin, 1);
            // 8 pairs at a time, a bit per change of centre (one vector comparison), then only the changes
            for (; p + 8 <= end; p += 8) {
                unsigned changes = 0;
                for (int k = 0; k < 8; ++k) changes |= unsigned(centers[p + k] != centers[p + k - 1]) << k;
                for (; changes != 0; changes &= changes - 1) steps_at(p + __builtin_ctz(changes));
            }
            for (; p < end; ++p) steps_at(p);
        });
        index.order.clear();
        return 0;
    }
    std::fill(offsets, offsets + n_atoms + 1, 0);
    for (int64_t p = 0; p < n_pairs; ++p) ++offsets[centers[p] + 1];
    for (int64_t a = 0; a < n_atoms; ++a) offsets[a + 1] += offsets[a];
    index.order.resize(n_pairs);
    std::vector<int64_t> next(offsets, offsets + n_atoms);
    for (int64_t p = 0; p < n_pairs; ++p) index.order[next[centers[p]]++] = p;
    return 0;
}

// What every kernel needs first: the pairs grouped by centre and the block sizes (status: 0, -1 or -2).
template <typename S>
struct Layout {
    static constexpr int W = Vec<S>::W;
    PairIndex index;
    int64_t n_pairs = 0, groups = 0, blocks = 0, wrow = 0;
    int64_t ahead = W;  // how many index positions ahead pair data is prefetched (about PREFETCH_BYTES of w)
    int status = 0;

    Layout(const int64_t* centers, int64_t n_pairs_, int64_t n_atoms, int64_t groups_, int n_threads)
    {
        if (n_pairs_ < 0 || n_atoms < 0 || groups_ < 1) {
            status = -2;
            return;
        }
        status = build_index(centers, n_pairs_, n_atoms, index, n_threads);
        n_pairs = n_pairs_;
        groups = groups_;
        blocks = (groups + W - 1) / W;
        wrow = groups * CH;
        ahead = std::max<int64_t>(W, PREFETCH_BYTES / int64_t(wrow * sizeof(S)));
    }
    int64_t begin(int64_t a) const { return index.offsets[a]; }
    int64_t end(int64_t a) const { return index.offsets[a + 1]; }
    int lanes(int64_t b) const { return int(std::min<int64_t>(W, groups - b * W)); }  // groups in block b

    // Prefetch of the row of `rows` (w, or ggw) and of r at index position k (nothing past the last pair), issued
    // `ahead` positions before use, one pair at a time inside the compute loops: as one burst per batch of pairs
    // the prefetches stalled the arithmetic behind them.
    void prefetch_pair(const S* r, const S* rows, int64_t k) const
    {
        if (k >= n_pairs) return;
        const int64_t p = index.pair(k);
        prefetch_span(rows + p * wrow, wrow * int64_t(sizeof(S)));
        prefetch(r + 3 * p);
    }

    // The first `ahead` index positions of atom a on, at once: the loops prefetch `ahead` positions before use, so
    // without this a thread's first pairs of every range it takes would each wait for memory.
    void prefetch_first(const S* r, const S* rows, int64_t a) const
    {
        for (int64_t k = begin(a); k < std::min(begin(a) + ahead, n_pairs); ++k) prefetch_pair(r, rows, k);
    }
};

// The first error code seen by any thread (0 while there is none).
struct Status {
    std::atomic<int> code{0};
    void fail(int c)
    {
        int expected = 0;
        code.compare_exchange_strong(expected, c);
    }
    bool failed() const { return code.load(std::memory_order_relaxed) != 0; }
};

// gw of a batch, BB blocks from b0 and one channel: g[bb][k] += sum over j of gT[block][ch][j] Y[j][k] (the
// pairs of the batch and BB blocks give BB x W independent FMA chains), then the store of the batch's rows.
template <typename S, int BB>
inline void add_gw(const Vec<S>* gT, const S (*Y)[Vec<S>::W], int64_t b0, int64_t blocks, int ch,
                   Vec<S> (*g)[Vec<S>::W])
{
    for (int j = 0; j < NH; ++j) {
        for (int bb = 0; bb < BB && b0 + bb < blocks; ++bb) {
            const Vec<S> t = gT[(b0 + bb) * NC + ch * NH + j];
            for (int k = 0; k < Vec<S>::W; ++k) g[bb][k] = g[bb][k] + mul(t, Y[j][k]);
        }
    }
}

template <typename S, int BB>
inline void store_gw(const Layout<S>& L, const int64_t* pairs, int n_pairs, int64_t b0, int ch,
                     Vec<S> (*g)[Vec<S>::W], S* gw)
{
    constexpr int W = Vec<S>::W;
    for (int bb = 0; bb < BB && b0 + bb < L.blocks; ++bb) {
        const int n = L.lanes(b0 + bb);
        for (int k = 0; k < n_pairs; ++k) {
            S* at = gw + pairs[k] * L.wrow + (b0 + bb) * W * CH + ch;
            if (CH == 1 && n == W) {
                if (!stream_line(at, g[bb][k])) {
                    const Vec<S> v = g[bb][k];  // a copy: taking g's address would keep every accumulator in memory
                    stream_copy_values(at, reinterpret_cast<const S*>(&v.x), W);
                }
            } else {
                store(at, CH, n, g[bb][k]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Forward: I and the saved moments T; T may be null (inference: the moments stay in a per-thread scratch row, so
// the call writes only I).

template <typename S>
int forward(const S* r, const S* w, const int64_t* centers, int64_t n_pairs, int64_t n_atoms, int64_t groups,
            S* I, S* T, int n_threads)
{
    typedef Vec<S> V;
    constexpr int W = V::W;
    const Layout<S> L(centers, n_pairs, n_atoms, groups, n_threads);
    if (L.status) return L.status;
    Status status;
    parallel_atoms(n_atoms, n_threads, [&](Chunks& chunks) {
        V inv[NI];
        PairBatch<S> batch;
        // one atom's moments and invariants, made in cache and then copied out with streaming stores
        std::vector<V> scratch(L.blocks * NC);
        std::vector<S> Irow(L.blocks * W * NI + W);  // W values of room for lanes_to_rows
        for (int64_t begin, end; chunks.take(begin, end);) {
            L.prefetch_first(r, w, begin);
            for (int64_t a = begin; a < end && !status.failed(); ++a) {
                V* Ta = scratch.data();
                for (int64_t c = 0; c < L.blocks * NC; ++c) Ta[c] = V(0.0);
                for (int64_t q = L.begin(a); q < L.end(a); q += W) {
                    if (!batch.load(r, L.index, q, L.end(a))) status.fail(-3);
                    // T[b][ch][j] += sum_k w[p_k][b][ch] Y[j][k], in register tiles of J_TILE harmonics
                    for (int64_t b = 0; b < L.blocks; ++b) {
                        const int n = L.lanes(b);
                        for (int ch = 0; ch < CH; ++ch) {
                            V* Tc = Ta + b * NC + ch * NH;
                            const S* wb = w + b * W * CH + ch;
                            for (int j0 = 0; j0 < NH; j0 += J_TILE) {
                                V tile[J_TILE];
                                for (int jj = 0; jj < J_TILE; ++jj) tile[jj] = j0 + jj < NH ? Tc[j0 + jj] : V(0.0);
                                const bool first = b == 0 && ch == 0 && j0 == 0;
                                for (int k = 0; k < batch.n; ++k) {
                                    if (first) L.prefetch_pair(r, w, q + L.ahead + k);
                                    const V wv = load(wb + batch.pairs[k] * L.wrow, CH, n);
                                    for (int jj = 0; jj < J_TILE; ++jj) {
                                        if (j0 + jj < NH) tile[jj] = tile[jj] + mul(wv, batch.Y[j0 + jj][k]);
                                    }
                                }
                                for (int jj = 0; jj < J_TILE && j0 + jj < NH; ++jj) Tc[j0 + jj] = tile[jj];
                            }
                        }
                    }
                }
                // x - x is 0 for finite x and NaN otherwise: one subtraction per moment checks them all
                V residue(0.0);
                for (int64_t c = 0; c < L.blocks * NC; ++c) residue = residue + (Ta[c] - Ta[c]);
                for (int k = 0; k < W; ++k) {
                    if (residue.x[k] != S(0)) status.fail(-4);
                }
                for (int64_t b = 0; b < L.blocks; ++b) {
                    const int n = L.lanes(b);
                    invariants_of(Ta + b * NC, inv);
                    lanes_to_rows<S>(inv, n, Irow.data() + b * W * NI);
                }
                stream_copy_values(I + a * groups * NI, Irow.data(), groups * NI);
                if (T) stream_copy_values(T + a * L.blocks * NC * W, reinterpret_cast<const S*>(Ta), L.blocks * NC * W);
            }
        }
        stream_fence();
    });
    return status.code.load();
}

// ---------------------------------------------------------------------------------------------------------
// Backward: gr [P][3] and gw [P][G][CH] from the invariant gradient gI and the saved moments T.

template <typename S>
int backward(const S* r, const S* w, const int64_t* centers, int64_t n_pairs, int64_t n_atoms, int64_t groups,
             const S* T, const S* gI, S* gr, S* gw, int n_threads)
{
    typedef Vec<S> V;
    constexpr int W = V::W;
    const Layout<S> L(centers, n_pairs, n_atoms, groups, n_threads);
    if (L.status) return L.status;
    // gY[j] of a pair = sum over (group, channel) of w gT[j]: lanes over harmonics (gT transposed once per atom),
    // so no sums across lanes; PK pairs at a time and gw over BB blocks at a time keep 8 or more independent FMA
    // chains in flight (one chain waits 4 cycles per FMA).
    constexpr int NHV = (NH + W - 1) / W;
    constexpr int PK = std::max(1, std::min(W, 8 / NHV));
    constexpr int BB = std::max(1, 8 / W);
    parallel_atoms(n_atoms, n_threads, [&](Chunks& chunks) {
        std::vector<V> gT(L.blocks * NC), gTt(L.wrow * NHV, V(0.0));
        V gIv[NI];
        PairBatch<S> batch;
        V gY[NHV][W];  // [jv][k]: pair k's gY[jv W ..] (lanes over harmonics), then transposed: gY[jv W + k]
        LineFeed next_atom;  // the next atom's moments and invariant gradient, prefetched during this atom's pairs
        for (int64_t begin, end; chunks.take(begin, end);) {
            L.prefetch_first(r, w, begin);
            for (int64_t a = begin; a < end; ++a) {
                const V* Ta = reinterpret_cast<const V*>(T) + a * L.blocks * NC;
                next_atom.flush();  // what this atom's pairs left (few pairs): needed now
                next_atom.reset();
                if (a + 1 < end) {
                    next_atom.add(Ta + L.blocks * NC, L.blocks * NC * int64_t(sizeof(V)));
                    next_atom.add(gI + (a + 1) * groups * NI, groups * NI * int64_t(sizeof(S)));
                }
                for (int64_t b = 0; b < L.blocks; ++b) {
                    const int n = L.lanes(b);
                    rows_to_lanes<S>(gI + (a * groups + b * W) * NI, n, gI + n_atoms * groups * NI, gIv);
                    V* gTb = gT.data() + b * NC;
                    invariants_vjp_of(Ta + b * NC, gIv, gTb);
                    for (int ch = 0; ch < CH; ++ch) {
                        V* to = gTt.data() + (b * W * CH + ch) * NHV;
                        to_harmonic_lanes<S>([&](int j) { return gTb[ch * NH + j]; }, n, to, CH * NHV);
                    }
                }
                for (int64_t q = L.begin(a); q < L.end(a); q += W) {
                    batch.load(r, L.index, q, L.end(a));  // checked by the forward
                    const int n_pairs_here = batch.n;
                    for (int k0 = 0; k0 < n_pairs_here; k0 += PK) {
                        V acc[PK][NHV];
                        const S* rows[PK];
                        for (int kk = 0; kk < PK; ++kk) {
                            for (int jv = 0; jv < NHV; ++jv) acc[kk][jv] = V(0.0);
                            rows[kk] = w + batch.pairs[std::min(k0 + kk, n_pairs_here - 1)] * L.wrow;
                        }
                        for (int64_t kk = L.wrow; kk < PK; ++kk) L.prefetch_pair(r, w, q + L.ahead + k0 + kk);
                        for (int64_t i = 0; i < L.wrow; ++i) {
                            if (i < PK) {
                                L.prefetch_pair(r, w, q + L.ahead + k0 + i);  // one pair per row of work
                            } else {
                                next_atom.next();
                            }
                            const V* t = gTt.data() + i * NHV;
                            for (int kk = 0; kk < PK; ++kk) {
                                const S x = rows[kk][i];
                                for (int jv = 0; jv < NHV; ++jv) acc[kk][jv] = acc[kk][jv] + mul(t[jv], x);
                            }
                        }
                        for (int kk = 0; kk < PK && k0 + kk < n_pairs_here; ++kk) {
                            for (int jv = 0; jv < NHV; ++jv) gY[jv][k0 + kk] = acc[kk][jv];
                        }
                    }
                    for (int k = n_pairs_here; k < W; ++k) {
                        for (int jv = 0; jv < NHV; ++jv) gY[jv][k] = V(0.0);
                    }
                    for (int jv = 0; jv < NHV; ++jv) transpose<S>(gY[jv]);
                    batch.gradient(gY[0], gr);
                    // gw[pair][block][ch] = sum over j of gT[block][ch][j] Y[j][pair]
                    for (int64_t b0 = 0; b0 < L.blocks; b0 += BB) {
                        for (int ch = 0; ch < CH; ++ch) {
                            V g[BB][W];
                            for (auto& row : g) std::fill(row, row + W, V(0.0));
                            add_gw<S, BB>(gT.data(), batch.Y, b0, L.blocks, ch, g);
                            store_gw<S, BB>(L, batch.pairs, n_pairs_here, b0, ch, g, gw);
                        }
                    }
                }
            }
        }
        stream_fence();
    });
    return 0;
}

// ---------------------------------------------------------------------------------------------------------
// Double backward: with S = <ggr, gr> + <ggw, gw> for the backward's outputs (gr, gw)(r, w, gI), returns
// dS/dr, dS/dw (Hessian-vector products) and dS/dgI (the forward's derivative along (ggr, ggw)). ggr or ggw
// may be null (zero).

template <typename S>
int double_backward(const S* r, const S* w, const int64_t* centers, int64_t n_pairs, int64_t n_atoms,
                     int64_t groups, const S* gI, const S* ggr, const S* ggw, S* grad_r, S* grad_w, S* grad_gI,
                     int n_threads)
{
    typedef Vec<S> V;
    typedef Dual<V> DV;
    constexpr int W = V::W;
    constexpr int NHV = (NH + W - 1) / W;
    constexpr int PK = std::max(1, std::min(W, 4 / NHV));  // dual accumulators: 2 * PK * NHV chains
    constexpr int BB = std::max(1, 8 / W);
    const Layout<S> L(centers, n_pairs, n_atoms, groups, n_threads);
    if (L.status) return L.status;
    parallel_atoms(n_atoms, n_threads, [&](Chunks& chunks) {
        std::vector<DV> Td(L.blocks * NC), gTd(L.blocks * NC);
        std::vector<V> gTv(L.blocks * NC), gTdd(L.blocks * NC);  // gTd split into values and tangents
        std::vector<V> gTtv(L.wrow * NHV, V(0.0)), gTtd(L.wrow * NHV, V(0.0));  // gT with lanes over harmonics
        DV inv[NI], gIv[NI];
        DualPairBatch<S> batch;
        std::vector<S> gIrow(L.blocks * W * NI + W);  // an atom's grad_gI, made in cache, then streamed out
        V gYv[NHV][W], gYd[NHV][W];  // as gY in backward: rows of pairs, then transposed to lanes over pairs
        for (int64_t begin, end; chunks.take(begin, end);) {
            L.prefetch_first(r, w, begin);
            if (ggw) L.prefetch_first(ggr ? ggr : r, ggw, begin);
            for (int64_t a = begin; a < end; ++a) {
                // moments and their tangents: T = sum w Y, dT = sum (ggw Y + w dY)
                for (auto& t : Td) t = DV(V(0.0), V(0.0));
                for (int64_t q = L.begin(a); q < L.end(a); q += W) {
                    batch.load(r, ggr, L.index, q, L.end(a));
                    for (int64_t b = 0; b < L.blocks; ++b) {
                        const int n = L.lanes(b);
                        for (int ch = 0; ch < CH; ++ch) {
                            DV* Tc = Td.data() + b * NC + ch * NH;
                            const int64_t at = b * W * CH + ch;
                            for (int j0 = 0; j0 < NH; j0 += J_TILE / 2) {
                                constexpr int JT = J_TILE / 2;
                                V tv[JT], td[JT];
                                for (int jj = 0; jj < JT && j0 + jj < NH; ++jj) {
                                    tv[jj] = Tc[j0 + jj].v;
                                    td[jj] = Tc[j0 + jj].d;
                                }
                                const bool first = b == 0 && ch == 0 && j0 == 0;
                                for (int k = 0; k < batch.n; ++k) {
                                    if (first) {  // one pair per pair of work, as in the forward
                                        L.prefetch_pair(r, w, q + L.ahead + k);
                                        if (ggw) L.prefetch_pair(ggr ? ggr : r, ggw, q + L.ahead + k);
                                    }
                                    const V wv = load(w + batch.pairs[k] * L.wrow + at, CH, n);
                                    const V wd = ggw ? load(ggw + batch.pairs[k] * L.wrow + at, CH, n) : V(0.0);
                                    for (int jj = 0; jj < JT; ++jj) {
                                        if (j0 + jj >= NH) break;
                                        tv[jj] = tv[jj] + mul(wv, batch.Yv[j0 + jj][k]);
                                        td[jj] = td[jj] + mul(wv, batch.Yd[j0 + jj][k]) + mul(wd, batch.Yv[j0 + jj][k]);
                                    }
                                }
                                for (int jj = 0; jj < JT && j0 + jj < NH; ++jj) Tc[j0 + jj] = DV(tv[jj], td[jj]);
                            }
                        }
                    }
                }
                for (int64_t b = 0; b < L.blocks; ++b) {
                    const int n = L.lanes(b);
                    invariants_of(Td.data() + b * NC, inv);
                    V rows[NI];
                    for (int k = 0; k < NI; ++k) rows[k] = inv[k].d;
                    lanes_to_rows<S>(rows, n, gIrow.data() + b * W * NI);
                    rows_to_lanes<S>(gI + (a * groups + b * W) * NI, n, gI + n_atoms * groups * NI, rows);
                    for (int k = 0; k < NI; ++k) gIv[k] = DV(rows[k], V(0.0));
                    DV* gTb = gTd.data() + b * NC;
                    invariants_vjp_of(Td.data() + b * NC, gIv, gTb);
                    for (int c = 0; c < NC; ++c) {
                        gTv[b * NC + c] = gTb[c].v;
                        gTdd[b * NC + c] = gTb[c].d;
                    }
                    for (int ch = 0; ch < CH; ++ch) {
                        const int64_t at = (b * W * CH + ch) * NHV;
                        to_harmonic_lanes<S>([&](int j) { return gTb[ch * NH + j].v; }, n, gTtv.data() + at, CH * NHV);
                        to_harmonic_lanes<S>([&](int j) { return gTb[ch * NH + j].d; }, n, gTtd.data() + at, CH * NHV);
                    }
                }
                stream_copy_values(grad_gI + a * groups * NI, gIrow.data(), groups * NI);
                if (a + 1 < end) prefetch_span(gI + (a + 1) * groups * NI, groups * NI * int64_t(sizeof(S)));
                for (int64_t q = L.begin(a); q < L.end(a); q += W) {
                    batch.load(r, ggr, L.index, q, L.end(a));
                    const int here = batch.n;
                    // gY = sum over (group, channel) of w gT, with its tangent: lanes over harmonics
                    for (int k0 = 0; k0 < here; k0 += PK) {
                        V accv[PK][NHV], accd[PK][NHV];
                        int64_t rows[PK];
                        for (int kk = 0; kk < PK; ++kk) {
                            for (int jv = 0; jv < NHV; ++jv) accv[kk][jv] = accd[kk][jv] = V(0.0);
                            rows[kk] = batch.pairs[std::min(k0 + kk, here - 1)] * L.wrow;
                        }
                        for (int64_t kk = L.wrow; kk < PK; ++kk) {
                            L.prefetch_pair(r, w, q + L.ahead + k0 + kk);
                            if (ggw) L.prefetch_pair(ggr ? ggr : r, ggw, q + L.ahead + k0 + kk);
                        }
                        for (int64_t i = 0; i < L.wrow; ++i) {
                            if (i < PK) {  // one pair per row of work, as in the backward
                                L.prefetch_pair(r, w, q + L.ahead + k0 + i);
                                if (ggw) L.prefetch_pair(ggr ? ggr : r, ggw, q + L.ahead + k0 + i);
                            }
                            const V* tv = gTtv.data() + i * NHV;
                            const V* td = gTtd.data() + i * NHV;
                            for (int kk = 0; kk < PK; ++kk) {
                                const S x = w[rows[kk] + i];
                                const S xd = ggw ? ggw[rows[kk] + i] : S(0);
                                for (int jv = 0; jv < NHV; ++jv) {
                                    accv[kk][jv] = accv[kk][jv] + mul(tv[jv], x);
                                    accd[kk][jv] = accd[kk][jv] + mul(td[jv], x) + mul(tv[jv], xd);
                                }
                            }
                        }
                        for (int kk = 0; kk < PK && k0 + kk < here; ++kk) {
                            for (int jv = 0; jv < NHV; ++jv) {
                                gYv[jv][k0 + kk] = accv[kk][jv];
                                gYd[jv][k0 + kk] = accd[kk][jv];
                            }
                        }
                    }
                    for (int k = here; k < W; ++k) {
                        for (int jv = 0; jv < NHV; ++jv) gYv[jv][k] = gYd[jv][k] = V(0.0);
                    }
                    for (int jv = 0; jv < NHV; ++jv) {
                        transpose<S>(gYv[jv]);
                        transpose<S>(gYd[jv]);
                    }
                    batch.gradient_tangent(gYv[0], gYd[0], grad_r);
                    // grad_w = tangent of gw = sum over j of (gT dY + dgT Y)
                    for (int64_t b0 = 0; b0 < L.blocks; b0 += BB) {
                        for (int ch = 0; ch < CH; ++ch) {
                            V g[BB][W];
                            for (auto& row : g) std::fill(row, row + W, V(0.0));
                            add_gw<S, BB>(gTv.data(), batch.Yd, b0, L.blocks, ch, g);
                            add_gw<S, BB>(gTdd.data(), batch.Yv, b0, L.blocks, ch, g);
                            store_gw<S, BB>(L, batch.pairs, here, b0, ch, g, grad_w);
                        }
                    }
                }
            }
        }
        stream_fence();
    });
    return 0;
}

}  // namespace fused

// ---------------------------------------------------------------------------------------------------------
// C entry points (loaded with ctypes; the GIL is released while they run).

extern "C" {

// sizes[0..5] = CHANNELS, N_HARMONICS, N_COORDS, N_INVARIANTS, lanes (float32), lanes (float64)
int cartinv_fused_sizes(int* sizes)
{
    sizes[0] = fused::CH;
    sizes[1] = fused::NH;
    sizes[2] = fused::NC;
    sizes[3] = fused::NI;
    sizes[4] = fused::Vec<float>::W;
    sizes[5] = fused::Vec<double>::W;
    return 0;
}

const char* cartinv_fused_basis_hash() { return cartinv::CARTINV_BASIS_NS::basis_hash(); }

#define CARTINV_FUSED_ENTRIES(S, SUFFIX)                                                                         \
    int cartinv_fused_forward_##SUFFIX(const S* r, const S* w, const int64_t* centers, int64_t n_pairs,          \
                                       int64_t n_atoms, int64_t groups, S* I, S* T, int n_threads)               \
    {                                                                                                          \
        return fused::forward<S>(r, w, centers, n_pairs, n_atoms, groups, I, T, n_threads);                    \
    }                                                                                                          \
    int cartinv_fused_backward_##SUFFIX(const S* r, const S* w, const int64_t* centers, int64_t n_pairs,         \
                                        int64_t n_atoms, int64_t groups, const S* T, const S* gI, S* gr, S* gw,  \
                                        int n_threads)                                                         \
    {                                                                                                          \
        return fused::backward<S>(r, w, centers, n_pairs, n_atoms, groups, T, gI, gr, gw, n_threads);          \
    }                                                                                                          \
    int cartinv_fused_double_backward_##SUFFIX(const S* r, const S* w, const int64_t* centers, int64_t n_pairs,  \
                                               int64_t n_atoms, int64_t groups, const S* gI, const S* ggr,       \
                                               const S* ggw, S* grad_r, S* grad_w, S* grad_gI, int n_threads)    \
    {                                                                                                          \
        return fused::double_backward<S>(r, w, centers, n_pairs, n_atoms, groups, gI, ggr, ggw, grad_r, grad_w, \
                                         grad_gI, n_threads);                                                  \
    }

CARTINV_FUSED_ENTRIES(float, f32)
CARTINV_FUSED_ENTRIES(double, f64)

}  // extern "C"
