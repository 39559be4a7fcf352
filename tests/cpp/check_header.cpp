// Test driver for a generated cartinv header, compiled by tests/test_c_targets.py with g++ only (no CUDA):
//   g++ -std=c++14 -I<generated> -DCARTINV_HEADER='"<name>.h"' -DCARTINV_NAMESPACE=cartinv::<ns> check_header.cpp
// Reads whitespace-separated numbers on stdin, runs every header function in the precision named by argv[1]
// ("f32" or "f64") and prints each result as a section "name count" followed by its values.
//
// stdin: n_atoms n_pairs groups n_rows, then r[n_pairs][3], w[n_pairs][groups][CHANNELS], centers[n_pairs],
//        gI[n_atoms][groups][N_INVARIANTS] (for the per-atom backward), T[n_rows][N_COORDS] and
//        gI[n_rows][N_INVARIANTS] (for invariants and invariants_vjp), gY[n_pairs][N_HARMONICS] (harmonics_vjp).
#include CARTINV_HEADER

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace basis = CARTINV_NAMESPACE;

static std::vector<double> read_values(long long count)
{
    std::vector<double> values(count);
    for (long long i = 0; i < count; ++i) {
        if (std::scanf("%lf", &values[i]) != 1) {
            std::fprintf(stderr, "input ended after %lld of %lld values\n", i, count);
            std::exit(2);
        }
    }
    return values;
}

template <typename scalar_t>
static std::vector<scalar_t> cast(const std::vector<double>& values)
{
    return std::vector<scalar_t>(values.begin(), values.end());
}

template <typename scalar_t>
static void print_section(const char* name, const std::vector<scalar_t>& values)
{
    std::printf("%s %zu\n", name, values.size());
    for (const scalar_t v : values) {
        std::printf("%.17g\n", static_cast<double>(v));
    }
}

template <typename scalar_t>
static int run()
{
    long long n_atoms, n_pairs, groups, n_rows;
    if (std::scanf("%lld %lld %lld %lld", &n_atoms, &n_pairs, &groups, &n_rows) != 4) {
        std::fprintf(stderr, "missing sizes\n");
        return 2;
    }
    const int G = static_cast<int>(groups);
    const auto r = cast<scalar_t>(read_values(n_pairs * 3));
    const auto w = cast<scalar_t>(read_values(n_pairs * groups * basis::CHANNELS));
    const auto centers_in = read_values(n_pairs);
    const auto atom_gI = cast<scalar_t>(read_values(n_atoms * groups * basis::N_INVARIANTS));
    const auto rows_T = cast<scalar_t>(read_values(n_rows * basis::N_COORDS));
    const auto rows_gI = cast<scalar_t>(read_values(n_rows * basis::N_INVARIANTS));
    const auto pair_gY = cast<scalar_t>(read_values(n_pairs * basis::N_HARMONICS));

    // Per pair: unit vector harmonics and the harmonics VJP at that unit vector.
    std::vector<scalar_t> Y(n_pairs * basis::N_HARMONICS), gu(n_pairs * 3);
    for (long long p = 0; p < n_pairs; ++p) {
        scalar_t u[3];
        scalar_t inv_length;
        basis::pair_harmonics(&r[3 * p], u, inv_length, &Y[p * basis::N_HARMONICS]);
        basis::harmonics_vjp(u[0], u[1], u[2], &pair_gY[p * basis::N_HARMONICS], &gu[3 * p]);
    }
    print_section("harmonics", Y);
    print_section("harmonics_vjp", gu);

    // Per row: invariants and their VJP at arbitrary moment rows.
    std::vector<scalar_t> I(n_rows * basis::N_INVARIANTS), gT(n_rows * basis::N_COORDS);
    for (long long k = 0; k < n_rows; ++k) {
        basis::invariants(&rows_T[k * basis::N_COORDS], &I[k * basis::N_INVARIANTS]);
        basis::invariants_vjp(&rows_T[k * basis::N_COORDS], &rows_gI[k * basis::N_INVARIANTS],
                              &gT[k * basis::N_COORDS]);
    }
    print_section("invariants", I);
    print_section("invariants_vjp", gT);

    // Per atom: forward and backward over the atom's pairs (pairs listed in input order).
    std::vector<std::vector<long long>> pairs(n_atoms);
    for (long long p = 0; p < n_pairs; ++p) {
        pairs[static_cast<long long>(centers_in[p])].push_back(p);
    }
    std::vector<scalar_t> atom_T(n_atoms * groups * basis::N_COORDS);
    std::vector<scalar_t> atom_I(n_atoms * groups * basis::N_INVARIANTS);
    std::vector<scalar_t> atom_gT(n_atoms * groups * basis::N_COORDS);
    std::vector<scalar_t> grad_r(n_pairs * 3, scalar_t(-999));
    std::vector<scalar_t> grad_w(n_pairs * groups * basis::CHANNELS, scalar_t(-999));
    for (long long i = 0; i < n_atoms; ++i) {
        const long long* list = pairs[i].empty() ? nullptr : pairs[i].data();
        const long long count = static_cast<long long>(pairs[i].size());
        basis::atom_forward(r.data(), w.data(), list, count, G, &atom_T[i * groups * basis::N_COORDS],
                            &atom_I[i * groups * basis::N_INVARIANTS]);
        basis::atom_backward(r.data(), w.data(), list, count, G, &atom_T[i * groups * basis::N_COORDS],
                             &atom_gI[i * groups * basis::N_INVARIANTS], &atom_gT[i * groups * basis::N_COORDS],
                             grad_r.data(), grad_w.data());
    }
    print_section("atom_moments", atom_T);
    print_section("atom_invariants", atom_I);
    print_section("atom_grad_moments", atom_gT);
    print_section("grad_r", grad_r);
    print_section("grad_w", grad_w);
    return 0;
}

int main(int argc, char** argv)
{
    if (argc == 2 && std::strcmp(argv[1], "f64") == 0) {
        return run<double>();
    }
    if (argc == 2 && std::strcmp(argv[1], "f32") == 0) {
        return run<float>();
    }
    std::fprintf(stderr, "usage: %s f32|f64 < input\n", argv[0]);
    return 2;
}
