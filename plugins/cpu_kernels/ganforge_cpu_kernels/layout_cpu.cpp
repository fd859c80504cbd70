// Layout copies of fp32 CPU tensors: contiguous (NCHW) copies of channels_last (NHWC) ones, for
// plugins/cpu_kernels/ganforge_cpu_kernels/upsampling.py; and, for plugins/cpu_kernels/ganforge_cpu_kernels/strided.py, an image's four phases (rows and
// columns split by parity) and a gradient widened by one row and column of zeros.
//
// torch's own copy from channels_last to NCHW ran at about 1 GB/s on the project's 2-core CPU: 16-22
// ms for a 64 x 256 x 256 map (the last up-sampling layer of a 256 px translation), 6-8 ms for 128 x
// 128 x 128. This loop takes 128 pixels x 16 channels at a time, a block that stays in L1 while it is
// read in runs of 16 floats and written in runs of 128: 3.5-4.5 ms and 2-2.6 ms. (The other direction
// torch does well: 5 and 2.6 ms, faster than the same loop reversed.)

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>

namespace {

constexpr int64_t PIXELS = 128, CHANNELS = 16;  // the block

void check(const at::Tensor& x, at::MemoryFormat format, const char* expected) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "x: expected a 4-D float32 CPU tensor");
  TORCH_CHECK(x.is_contiguous(format), "x: expected a ", expected, " tensor");
}

// A contiguous (NCHW) copy of a channels_last tensor: nchw[b][c][p] = nhwc[b][p][c] for p < H * W.
at::Tensor to_nchw(at::Tensor x) {
  check(x, at::MemoryFormat::ChannelsLast, "channels_last");
  at::Tensor y = at::empty(x.sizes(), x.options());
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  const int64_t blocks = (hw + PIXELS - 1) / PIXELS;
  const float* src = x.data_ptr<float>();
  float* dst = y.data_ptr<float>();
  at::parallel_for(0, n * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, p0 = task % blocks * PIXELS, pn = std::min(PIXELS, hw - p0);
      for (int64_t c0 = 0; c0 < c; c0 += CHANNELS) {
        for (int64_t ci = c0; ci < std::min(c, c0 + CHANNELS); ++ci) {
          const float* in = src + (b * hw + p0) * c + ci;
          float* out = dst + (b * c + ci) * hw + p0;
          for (int64_t p = 0; p < pn; ++p) out[p] = in[p * c];
        }
      }
    }
  });
  return y;
}

void check_nchw(const at::Tensor& x) { check(x, at::MemoryFormat::Contiguous, "contiguous"); }

// x (N, C, H, W), H and W even, zero-padded by one pixel -> its four phases P (4, C, L + wp + 1),
// L = N * hp * wp, hp = H / 2 + 1, wp = W / 2 + 1: P[2p + q][c][(n * hp + a) * wp + b] =
// padded[n][c][2a + p][2b + q]. The last wp + 1 values of each row are zeros: a window of L values
// shifted by up to one row and one column stays inside the tensor.
at::Tensor phases(at::Tensor x) {
  check_nchw(x);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  TORCH_CHECK(h % 2 == 0 && w % 2 == 0 && h > 0 && w > 0, "x: height and width must be even");
  const int64_t hp = h / 2 + 1, wp = w / 2 + 1, len = n * hp * wp, row = len + wp + 1;
  at::Tensor out = at::empty({4, c, row}, x.options());
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, c, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      for (int64_t img = 0; img < n; ++img) {
        const float* plane = src + (img * c + ch) * h * w;
        for (int p = 0; p < 2; ++p) {
          float* even = dst + ((2 * p) * c + ch) * row + img * hp * wp;  // q = 0: padded columns 0, 2, ...
          float* odd = dst + ((2 * p + 1) * c + ch) * row + img * hp * wp;  // q = 1: padded columns 1, 3, ...
          for (int64_t a = 0; a < hp; ++a) {
            const int64_t r = 2 * a + p - 1;  // the source row of padded row 2a + p
            float* e = even + a * wp;
            float* o = odd + a * wp;
            if (r < 0 || r >= h) {
              std::fill_n(e, wp, 0.f);
              std::fill_n(o, wp, 0.f);
              continue;
            }
            const float* in = plane + r * w;
            e[0] = 0.f;  // padded column 0
            o[wp - 1] = 0.f;  // padded column W + 1
#pragma omp simd
            for (int64_t b = 0; b < wp - 1; ++b) {
              o[b] = in[2 * b];  // padded column 2b + 1
              e[b + 1] = in[2 * b + 1];  // padded column 2b + 2
            }
          }
        }
      }
      for (int k = 0; k < 4; ++k) std::fill_n(dst + (k * c + ch) * row + len, wp + 1, 0.f);
    }
  });
  return out;
}

// y (N, K, h, w) -> (K, N * (h + 1) * (w + 1)): each plane widened by a zero row and a zero column,
// the layout phases() gives its windows.
at::Tensor widened(at::Tensor y) {
  check_nchw(y);
  const int64_t n = y.size(0), k = y.size(1), h = y.size(2), w = y.size(3), hp = h + 1, wp = w + 1;
  at::Tensor out = at::empty({k, n * hp * wp}, y.options());
  const float* src = y.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, k, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      for (int64_t img = 0; img < n; ++img) {
        const float* plane = src + (img * k + ch) * h * w;
        float* o = dst + ch * n * hp * wp + img * hp * wp;
        for (int64_t a = 0; a < h; ++a) {
          std::copy_n(plane + a * w, w, o + a * wp);
          o[a * wp + w] = 0.f;
        }
        std::fill_n(o + h * wp, wp, 0.f);
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(ganforge_layout, lib) {
  lib.def("to_nchw(Tensor x) -> Tensor");
  lib.def("phases(Tensor x) -> Tensor");
  lib.def("widened(Tensor y) -> Tensor");
}

TORCH_LIBRARY_IMPL(ganforge_layout, CPU, lib) {
  lib.impl("to_nchw", &to_nchw);
  lib.impl("phases", &phases);
  lib.impl("widened", &widened);
}
