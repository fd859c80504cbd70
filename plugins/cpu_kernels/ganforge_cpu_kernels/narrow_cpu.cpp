// Stride-1 convolutions with few channels on one side, as fp32 CPU loops for plugins/cpu_kernels/ganforge_cpu_kernels/narrow.py:
// an image generator's 64 -> 3 output layer and 3 -> 64 input layer (7x7), and each one's input
// gradient, which is a convolution of the other shape (the flipped filters, channels swapped).
//
// oneDNN computes these shapes at 25-45 GFLOP/s on the project's 2-core AVX2 CPU, or at 110-140 for
// the 3 -> 64 forward in some calls and not in others of the same shape: its kernels block over
// channels, and three fill no block. These loops block over pixels, whole image rows at a time:
//   few outputs (K <= 4): one output row of all K channels is accumulated in a small buffer (L1), and
//     each input row (channel c, filter row r) is streamed once to add its S taps to all K of them;
//   many outputs: 6 output channels x 16 pixels are accumulated in 12 vector registers over all the
//     (few) input channels, filter rows and taps.
// Zero padding is applied row by row (rows of zeros skipped, sides copied). Filter gradients
// stay with oneDNN, which runs them at 75-85 GFLOP/s.
// Layouts: x (N, C, Hi, Wi), w (K, C, R, S), y (N, K, Hi - R + 1, Wi - S + 1), all contiguous.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

// Eight floats in a vector register (AVX with -march=native, two SSE registers otherwise): GCC's and
// clang's vector extension, so the blocking below is explicit without intrinsics. vload/vstore take
// any address.
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

inline v8 vload(const float* p) { return *reinterpret_cast<const v8u*>(p); }
inline void vstore(float* p, v8 v) { *reinterpret_cast<v8u*>(p) = v; }
inline v8 splat(float f) { return v8{f, f, f, f, f, f, f, f}; }

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4, name, ": expected 4 dimensions, got ", t.dim());
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, ": expected float32");
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, ": expected a contiguous tensor");
}

// ---- few outputs: K <= 4 -------------------------------------------------------------------------

// acc[k][0, wo) += sum_s w[k][s] * row[s, s + wo) for one input row, all K channels at once.
// acc rows are padded to a multiple of 8; the last block reads its input from a zero-padded copy.
template <int K, int S>
inline void add_row_few(const float* row, int64_t wo, const float* const* w, float* acc, int64_t acc_stride) {
  v8 wv[K][S];
  for (int k = 0; k < K; ++k)
    for (int s = 0; s < S; ++s) wv[k][s] = splat(w[k][s]);
  const int64_t full = wo / 8 * 8;
  auto block = [&](const float* in, int64_t x) {
    v8 iv[S];
    for (int s = 0; s < S; ++s) iv[s] = vload(in + s);
    for (int k = 0; k < K; ++k) {
      v8 a = vload(acc + k * acc_stride + x);
      for (int s = 0; s < S; ++s) a += wv[k][s] * iv[s];
      vstore(acc + k * acc_stride + x, a);
    }
  };
  for (int64_t x = 0; x < full; x += 8) block(row + x, x);
  if (full < wo) {
    float tail[8 + S - 1] = {};
    std::memcpy(tail, row + full, sizeof(float) * (wo - full + S - 1));
    block(tail, full);
  }
}

// The same for any filter width (slower: taps in a runtime loop).
template <int K>
inline void add_row_few_any(const float* row, int64_t wo, int64_t s_len, const float* const* w, float* acc,
                            int64_t acc_stride, std::vector<float>& tail) {
  const int64_t full = wo / 8 * 8;
  auto block = [&](const float* in, int64_t x) {
    for (int k = 0; k < K; ++k) {
      v8 a = vload(acc + k * acc_stride + x);
      for (int64_t s = 0; s < s_len; ++s) a += splat(w[k][s]) * vload(in + s);
      vstore(acc + k * acc_stride + x, a);
    }
  };
  for (int64_t x = 0; x < full; x += 8) block(row + x, x);
  if (full < wo) {
    std::fill(tail.begin(), tail.end(), 0.f);
    std::memcpy(tail.data(), row + full, sizeof(float) * (wo - full + s_len - 1));
    block(tail.data(), full);
  }
}

// One image row (channel ci, row iy of image b) with pw zeros on each side, or nullptr for a row of
// the zero padding above or below: the original row where pw = 0, else a copy in `padded`.
struct Rows {
  const float* x;
  int64_t c, hi, wi, ph, pw;
  const float* get(int64_t b, int64_t ci, int64_t iy, std::vector<float>& padded) const {
    if (iy < 0 || iy >= hi) return nullptr;
    const float* row = x + ((b * c + ci) * hi + iy) * wi;
    if (pw == 0) return row;
    std::memcpy(padded.data() + pw, row, sizeof(float) * wi);  // the sides of `padded` stay zero
    return padded.data();
  }
};

template <int K, int S>
void conv_few_outputs(const Rows& rows, const at::Tensor& w, const float* bias, at::Tensor& y) {
  const int64_t c = rows.c, r_len = w.size(2), s_len = w.size(3);
  const int64_t n = y.size(0), ho = y.size(2), wo = y.size(3);
  const int64_t stride = (wo + 7) / 8 * 8;
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, n * ho, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(K * stride);
    std::vector<float> tail(8 + s_len - 1);
    std::vector<float> padded(rows.wi + 2 * rows.pw, 0.f);
    for (int64_t row_index = begin; row_index < end; ++row_index) {
      const int64_t b = row_index / ho, yo = row_index % ho;
      for (int k = 0; k < K; ++k) std::fill(acc.begin() + k * stride, acc.begin() + (k + 1) * stride, bias ? bias[k] : 0.f);
      for (int64_t ci = 0; ci < c; ++ci) {
        for (int64_t r = 0; r < r_len; ++r) {
          const float* row = rows.get(b, ci, yo + r - rows.ph, padded);
          if (row == nullptr) continue;
          const float* taps[K];
          for (int k = 0; k < K; ++k) taps[k] = wp + ((k * c + ci) * r_len + r) * s_len;
          if constexpr (S > 0) {
            add_row_few<K, S>(row, wo, taps, acc.data(), stride);
          } else {
            add_row_few_any<K>(row, wo, s_len, taps, acc.data(), stride, tail);
          }
        }
      }
      for (int k = 0; k < K; ++k) std::memcpy(yp + ((b * K + k) * ho + yo) * wo, acc.data() + k * stride, sizeof(float) * wo);
    }
  });
}

// ---- few inputs, many outputs --------------------------------------------------------------------

// y[k0 + j][x, x + 16) for j < KB, accumulated in registers over all input channels, rows and taps.
// KB = 6 takes 12 registers for the sums, 2 for the input and 1 for a broadcast filter tap (AVX2 has
// 16): 12 FMAs per 8 loads; 4 output channels x 16 pixels ran at 70 GFLOP/s, 6 at 120-130.
template <int KB>
inline void block_many(const float* xp, int64_t c, int64_t hi, int64_t wi, const float* wp, int64_t r_len, int64_t s_len,
                       int64_t k0, const float* bias, int64_t x, float* const* out) {
  v8 a[KB][2];
  for (int j = 0; j < KB; ++j) a[j][0] = a[j][1] = splat(bias ? bias[k0 + j] : 0.f);
  for (int64_t ci = 0; ci < c; ++ci) {
    for (int64_t r = 0; r < r_len; ++r) {
      const float* row = xp + (ci * hi + r) * wi + x;
      const float* taps = wp + ((k0 * c + ci) * r_len + r) * s_len;
      const int64_t k_stride = c * r_len * s_len;
      for (int64_t s = 0; s < s_len; ++s) {
        const v8 i0 = vload(row + s), i1 = vload(row + s + 8);
        for (int j = 0; j < KB; ++j) {
          const v8 wv = splat(taps[j * k_stride + s]);
          a[j][0] += wv * i0;
          a[j][1] += wv * i1;
        }
      }
    }
  }
  for (int j = 0; j < KB; ++j) {
    vstore(out[j] + x, a[j][0]);
    vstore(out[j] + x + 8, a[j][1]);
  }
}

template <int KB>
void row_many(const float* xp, int64_t c, int64_t hi, int64_t wi, const float* wp, int64_t r_len, int64_t s_len,
              int64_t k0, const float* bias, int64_t wo, float* const* out) {
  // blocks of 16 pixels; the last one overlaps the one before it (it stores the same values again)
  for (int64_t x = 0;; x += 16) {
    const int64_t start = std::min(x, wo - 16);
    block_many<KB>(xp, c, hi, wi, wp, r_len, s_len, k0, bias, start, out);
    if (start + 16 >= wo) break;
  }
}

void conv_many_outputs(const Rows& rows, const at::Tensor& w, const float* bias, at::Tensor& y) {
  const int64_t c = rows.c, k = w.size(0), r_len = w.size(2), s_len = w.size(3);
  const int64_t n = y.size(0), ho = y.size(2), wo = y.size(3);
  const bool padded = rows.ph || rows.pw;
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, n * ho, 1, [&](int64_t begin, int64_t end) {
    // with padding, the c x R input rows of one output row are copied into `window` (zeros around)
    const int64_t wi = rows.wi + 2 * rows.pw;
    std::vector<float> window(padded ? c * r_len * wi : 0, 0.f), row_copy(wi, 0.f);
    for (int64_t row_index = begin; row_index < end; ++row_index) {
      const int64_t b = row_index / ho, yo = row_index % ho;
      const float* in = rows.x + (b * c * rows.hi + yo) * rows.wi;  // c planes of hi rows
      int64_t hi = rows.hi;
      if (padded) {
        for (int64_t ci = 0; ci < c; ++ci) {
          for (int64_t r = 0; r < r_len; ++r) {
            const float* row = rows.get(b, ci, yo + r - rows.ph, row_copy);
            float* dst = window.data() + (ci * r_len + r) * wi;
            if (row == nullptr) {
              std::fill(dst, dst + wi, 0.f);
            } else {
              std::memcpy(dst, row, sizeof(float) * wi);
            }
          }
        }
        in = window.data();  // c planes of r_len rows
        hi = r_len;
      }
      if (wo < 16) {  // too narrow for a block: plain loops
        for (int64_t kk = 0; kk < k; ++kk) {
          float* out = yp + ((b * k + kk) * ho + yo) * wo;
          for (int64_t xo = 0; xo < wo; ++xo) {
            float sum = bias ? bias[kk] : 0.f;
            for (int64_t ci = 0; ci < c; ++ci)
              for (int64_t r = 0; r < r_len; ++r)
                for (int64_t s = 0; s < s_len; ++s)
                  sum += wp[((kk * c + ci) * r_len + r) * s_len + s] * in[(ci * hi + r) * wi + xo + s];
            out[xo] = sum;
          }
        }
        continue;
      }
      int64_t k0 = 0;
      for (; k0 + 6 <= k; k0 += 6) {
        float* out[6];
        for (int j = 0; j < 6; ++j) out[j] = yp + ((b * k + k0 + j) * ho + yo) * wo;
        row_many<6>(in, c, hi, wi, wp, r_len, s_len, k0, bias, wo, out);
      }
      for (; k0 + 4 <= k; k0 += 4) {
        float* out[4];
        for (int j = 0; j < 4; ++j) out[j] = yp + ((b * k + k0 + j) * ho + yo) * wo;
        row_many<4>(in, c, hi, wi, wp, r_len, s_len, k0, bias, wo, out);
      }
      for (; k0 < k; ++k0) {
        float* out[1] = {yp + ((b * k + k0) * ho + yo) * wo};
        row_many<1>(in, c, hi, wi, wp, r_len, s_len, k0, bias, wo, out);
      }
    }
  });
}

template <int K>
void conv_few_outputs_of_width(const Rows& rows, const at::Tensor& w, const float* bias, at::Tensor& y) {
  switch (w.size(3)) {
    case 3: return conv_few_outputs<K, 3>(rows, w, bias, y);
    case 4: return conv_few_outputs<K, 4>(rows, w, bias, y);
    case 5: return conv_few_outputs<K, 5>(rows, w, bias, y);
    case 7: return conv_few_outputs<K, 7>(rows, w, bias, y);
    default: return conv_few_outputs<K, 0>(rows, w, bias, y);
  }
}

// y = conv2d(x, w, bias, padding=(ph, pw)), stride 1, zero padding.
at::Tensor narrow_conv(at::Tensor x, at::Tensor w, std::optional<at::Tensor> bias, int64_t ph, int64_t pw) {
  check(x, "x");
  check(w, "w");
  TORCH_CHECK(w.size(1) == x.size(1), "w: expected ", x.size(1), " input channels, got ", w.size(1));
  TORCH_CHECK(ph >= 0 && pw >= 0 && ph < w.size(2) && pw < w.size(3), "padding: expected 0 to the filter size - 1");
  const int64_t ho = x.size(2) + 2 * ph - w.size(2) + 1, wo = x.size(3) + 2 * pw - w.size(3) + 1;
  TORCH_CHECK(ho > 0 && wo > 0, "x: smaller than the filter");
  const float* b = nullptr;
  if (bias && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == w.size(0) && bias->scalar_type() == at::kFloat &&
                    bias->is_contiguous() && bias->device().is_cpu(),
                "bias: expected a contiguous float32 CPU vector of ", w.size(0));
    b = bias->data_ptr<float>();
  }
  at::Tensor y = at::empty({x.size(0), w.size(0), ho, wo}, x.options());
  const Rows rows{x.data_ptr<float>(), x.size(1), x.size(2), x.size(3), ph, pw};
  switch (w.size(0)) {
    case 1: conv_few_outputs_of_width<1>(rows, w, b, y); break;
    case 2: conv_few_outputs_of_width<2>(rows, w, b, y); break;
    case 3: conv_few_outputs_of_width<3>(rows, w, b, y); break;
    case 4: conv_few_outputs_of_width<4>(rows, w, b, y); break;
    default: conv_many_outputs(rows, w, b, y);
  }
  return y;
}

}  // namespace

TORCH_LIBRARY(ganforge_narrow, lib) {
  lib.def("conv(Tensor x, Tensor w, Tensor? bias, int ph, int pw) -> Tensor");
}

TORCH_LIBRARY_IMPL(ganforge_narrow, CPU, lib) {
  lib.impl("conv", &narrow_conv);
}
