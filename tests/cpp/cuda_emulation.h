// Minimal CPU emulation of the CUDA execution model, enough to run the generated kernels with g++ (C++20):
// each block runs as blockDim.x * blockDim.y * blockDim.z std::threads sharing one shared-memory buffer;
// __syncthreads / __syncthreads_or are real barriers (std::barrier), so a kernel that skips a barrier on some
// threads deadlocks or races here just as on a GPU. Blocks run one after another.
//
// Shared memory is filled with 0xFF bytes before each block (NaN for float and double, so reading a slot that
// no thread wrote shows up in the results) and everything past the requested dynamic size is checked afterwards
// (a write past the launch's shared-memory size is reported as an error).
#ifndef CARTINV_CUDA_EMULATION_H
#define CARTINV_CUDA_EMULATION_H

#include <atomic>
#include <barrier>
#include <cstddef>
#include <cstring>
#include <thread>
#include <vector>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
    dim3() = default;
    dim3(unsigned int x_, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

constexpr std::size_t CARTINV_EMULATED_SHARED_BYTES = std::size_t(1) << 16;

struct CartinvBlockSync {
    struct Completion {
        CartinvBlockSync* self;
        void operator()() noexcept { self->result = self->accumulator.exchange(0); }
    };
    std::atomic<int> accumulator{0};
    int result = 0;
    std::barrier<Completion> barrier;
    explicit CartinvBlockSync(std::ptrdiff_t threads) : barrier(threads, Completion{this}) {}
};

inline CartinvBlockSync* cartinv_current_block = nullptr;

inline void __syncthreads() { cartinv_current_block->barrier.arrive_and_wait(); }

inline int __syncthreads_or(int predicate)
{
    if (predicate) {
        cartinv_current_block->accumulator.fetch_or(1);
    }
    cartinv_current_block->barrier.arrive_and_wait();
    return cartinv_current_block->result;
}

// Run kernel() on every thread of every block. Returns 0, or 1 when the requested shared memory exceeds the
// emulated capacity, or 2 when a block wrote past the requested shared-memory size.
template <typename Kernel>
int cartinv_emulate_launch(dim3 grid, dim3 block, std::size_t shared_bytes, unsigned char* shared, Kernel kernel)
{
    if (shared_bytes > CARTINV_EMULATED_SHARED_BYTES) {
        return 1;
    }
    gridDim = grid;
    blockDim = block;
    const std::size_t threads = std::size_t(block.x) * block.y * block.z;
    for (unsigned int bz = 0; bz < grid.z; ++bz) {
        for (unsigned int by = 0; by < grid.y; ++by) {
            for (unsigned int bx = 0; bx < grid.x; ++bx) {
                std::memset(shared, 0xFF, CARTINV_EMULATED_SHARED_BYTES);
                CartinvBlockSync sync(static_cast<std::ptrdiff_t>(threads));
                cartinv_current_block = &sync;
                std::vector<std::thread> pool;
                pool.reserve(threads);
                for (unsigned int tz = 0; tz < block.z; ++tz) {
                    for (unsigned int ty = 0; ty < block.y; ++ty) {
                        for (unsigned int tx = 0; tx < block.x; ++tx) {
                            pool.emplace_back([=] {
                                threadIdx = dim3(tx, ty, tz);
                                blockIdx = dim3(bx, by, bz);
                                kernel();
                            });
                        }
                    }
                }
                for (auto& t : pool) {
                    t.join();
                }
                cartinv_current_block = nullptr;
                for (std::size_t b = shared_bytes; b < CARTINV_EMULATED_SHARED_BYTES; ++b) {
                    if (shared[b] != 0xFF) {
                        return 2;
                    }
                }
            }
        }
    }
    return 0;
}

#endif  // CARTINV_CUDA_EMULATION_H
