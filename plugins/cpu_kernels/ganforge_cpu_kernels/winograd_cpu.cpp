// The transforms of Winograd F(4x4, 3x3) and their adjoints as fused fp32 CPU loops, for
// plugins/cpu_kernels/ganforge_cpu_kernels/winograd.py: input tiles, output tiles and filters, forward and backward; and the
// filter transforms of F(3x3, 4x4), whose 6x6 tiles the same B^T transforms.
//
// Each reads its input once and writes its output once. Done with torch's operators they need GEMMs
// with an inner size of 9, 16 or 36, permuting copies and (for the input gradient) col2im; that took
// about a third of a Winograd training step. The 2-D transforms are separable: a vertical pass along
// whole image rows, then a horizontal pass per tile on the row split by column modulo 4, so both
// passes run over contiguous memory and vectorise.
// Layouts (T = tiles per image = th * tw, tile t = i * tw + j):
//   padded input x (N, C, 4th+2, 4tw+2)  <->  transformed tiles V (36, C, N*T)
//   (the *_reflect ops: input x (N, C, 4th, 4tw), reflection-padded by one pixel inside the transform)
//   products M (36, K, N*T)              <->  output y (N, K, 4th, 4tw)
//   filters (K, C, r, r), r = 3 or 4     <->  transformed filters U (36, K, C)

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

// Each inner loop runs over one row of pixels, tiles or channels with no dependence between its
// iterations; the pragma lets the compiler vectorise it although it cannot prove the pointers apart.
#define GANFORGE_SIMD _Pragma("omp simd")

namespace {

// B^T (6x6): v_a = sum_r BT[a][r] d_r, written out (its zeros skipped).
template <typename In, typename Out>
inline void apply_bt(const In& d, Out&& v) {
  v(0, 4.f * d(0) - 5.f * d(2) + d(4));
  v(1, -4.f * d(1) - 4.f * d(2) + d(3) + d(4));
  v(2, 4.f * d(1) - 4.f * d(2) - d(3) + d(4));
  v(3, -2.f * d(1) - d(2) + 2.f * d(3) + d(4));
  v(4, 2.f * d(1) - d(2) - 2.f * d(3) + d(4));
  v(5, 4.f * d(1) - 5.f * d(3) + d(5));
}

// B (6x6), the adjoint of bt: d_r = sum_a BT[a][r] v_a.
template <typename In, typename Out>
inline void apply_b(const In& v, Out&& d) {
  d(0, 4.f * v(0));
  d(1, -4.f * v(1) + 4.f * v(2) - 2.f * v(3) + 2.f * v(4) + 4.f * v(5));
  d(2, -5.f * v(0) - 4.f * v(1) - 4.f * v(2) - v(3) - v(4));
  d(3, v(1) - v(2) + 2.f * v(3) - 2.f * v(4) - 5.f * v(5));
  d(4, v(0) + v(1) + v(2) + v(3) + v(4));
  d(5, v(5));
}

// A^T (4x6): o_r = sum_a AT[r][a] m_a.
template <typename In, typename Out>
inline void apply_at(const In& m, Out&& o) {
  o(0, m(0) + m(1) + m(2) + m(3) + m(4));
  o(1, m(1) - m(2) + 2.f * m(3) - 2.f * m(4));
  o(2, m(1) + m(2) + 4.f * m(3) + 4.f * m(4));
  o(3, m(1) - m(2) + 8.f * m(3) - 8.f * m(4) + m(5));
}

// A (6x4), the adjoint of at: m_a = sum_r AT[r][a] g_r.
template <typename In, typename Out>
inline void apply_a(const In& g, Out&& m) {
  m(0, g(0));
  m(1, g(0) + g(1) + g(2) + g(3));
  m(2, g(0) - g(1) + g(2) - g(3));
  m(3, g(0) + 2.f * g(1) + 4.f * g(2) + 8.f * g(3));
  m(4, g(0) - 2.f * g(1) + 4.f * g(2) - 8.f * g(3));
  m(5, g(3));
}

// The filter transform G and its adjoint G^T for each filter side, for the templates below.
// F(4x4, 3x3): G (6x3), o_a = sum_r G[a][r] g_r; G^T (3x6), g_r = sum_a G[a][r] u_a.
struct Filters3 {
  static constexpr int R = 3;
  template <typename In, typename Out>
  static inline void g(const In& w, Out&& o) {
    const float g0 = w(0), g1 = w(1), g2 = w(2);
    o(0, g0 * 0.25f);
    o(1, (g0 + g1 + g2) * (-1.f / 6.f));
    o(2, (g0 - g1 + g2) * (-1.f / 6.f));
    o(3, g0 * (1.f / 24.f) + g1 * (1.f / 12.f) + g2 * (1.f / 6.f));
    o(4, g0 * (1.f / 24.f) - g1 * (1.f / 12.f) + g2 * (1.f / 6.f));
    o(5, g2);
  }
  template <typename In, typename Out>
  static inline void gt(const In& u, Out&& w) {
    const float u0 = u(0), u1 = u(1), u2 = u(2), u3 = u(3), u4 = u(4), u5 = u(5);
    w(0, u0 * 0.25f - (u1 + u2) * (1.f / 6.f) + (u3 + u4) * (1.f / 24.f));
    w(1, (u2 - u1) * (1.f / 6.f) + (u3 - u4) * (1.f / 12.f));
    w(2, (u3 + u4 - u1 - u2) * (1.f / 6.f) + u5);
  }
};

// F(3x3, 4x4) at the same points: G (6x4) and G^T.
struct Filters4 {
  static constexpr int R = 4;
  template <typename In, typename Out>
  static inline void g(const In& w, Out&& o) {
    const float g0 = w(0), g1 = w(1), g2 = w(2), g3 = w(3);
    o(0, g0 * 0.25f);
    o(1, (g0 + g1 + g2 + g3) * (-1.f / 6.f));
    o(2, (g0 - g1 + g2 - g3) * (-1.f / 6.f));
    o(3, g0 * (1.f / 24.f) + g1 * (1.f / 12.f) + g2 * (1.f / 6.f) + g3 * (1.f / 3.f));
    o(4, g0 * (1.f / 24.f) - g1 * (1.f / 12.f) + g2 * (1.f / 6.f) - g3 * (1.f / 3.f));
    o(5, g3);
  }
  template <typename In, typename Out>
  static inline void gt(const In& u, Out&& w) {
    const float u0 = u(0), u1 = u(1), u2 = u(2), u3 = u(3), u4 = u(4), u5 = u(5);
    w(0, u0 * 0.25f - (u1 + u2) * (1.f / 6.f) + (u3 + u4) * (1.f / 24.f));
    w(1, (u2 - u1) * (1.f / 6.f) + (u3 - u4) * (1.f / 12.f));
    w(2, (u3 + u4 - u1 - u2) * (1.f / 6.f));
    w(3, (u2 - u1) * (1.f / 6.f) + (u3 - u4) * (1.f / 3.f) + u5);
  }
};

// The 36 planes of a transformed tensor lie (rows x stride) apart, a multiple of 4 KiB for the usual
// sizes: touching all 36 at the same offset maps them to the same cache sets. So each plane's run of
// `len` values is copied whole, one after the other, to or from a small contiguous buffer.
inline void gather(const float* src, int64_t stride, int64_t len, float* buf) {
  for (int e = 0; e < 36; ++e) std::copy_n(src + e * stride, len, buf + e * len);
}

inline void scatter(const float* buf, int64_t len, float* dst, int64_t stride) {
  for (int e = 0; e < 36; ++e) std::copy_n(buf + e * len, len, dst + e * stride);
}

// Row x[0..4n) split by position modulo 4, and back: p_s[j] = x[4j + s]. Written as one stride-4 group
// so that the compiler turns it into vector loads and shuffles (an index computed per element is not
// vectorised).
inline void deinterleave4(const float* x, int64_t n, float* p0, float* p1, float* p2, float* p3) {
  GANFORGE_SIMD
  for (int64_t j = 0; j < n; ++j) {
    p0[j] = x[4 * j];
    p1[j] = x[4 * j + 1];
    p2[j] = x[4 * j + 2];
    p3[j] = x[4 * j + 3];
  }
}

inline void interleave4(const float* p0, const float* p1, const float* p2, const float* p3, int64_t n, float* x) {
  GANFORGE_SIMD
  for (int64_t j = 0; j < n; ++j) {
    x[4 * j] = p0[j];
    x[4 * j + 1] = p1[j];
    x[4 * j + 2] = p2[j];
    x[4 * j + 3] = p3[j];
  }
}

void check(const at::Tensor& t, int64_t dim, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, name, " must be a CPU float32 tensor");
  TORCH_CHECK(t.dim() == dim && t.is_contiguous(), name, " must be a contiguous ", dim, "-D tensor");
}

}  // namespace

// Reflection padding by one pixel: padded index p (0 .. size+1) reads source index reflected(p, size).
inline int64_t reflected(int64_t p, int64_t size) {
  const int64_t s = p - 1;
  return s < 0 ? 1 : (s >= size ? size - 2 : s);
}

// x (N, C, 4th+2, 4tw+2) -> V (36, C, N*th*tw); with `reflect`, x is (N, C, 4th, 4tw) and its
// reflection padding by one pixel is made row by row here instead of by a padded copy.
void transform_tiles(const at::Tensor& x, at::Tensor& v, bool reflect = false) {
  check(x, 4, "x");
  const int64_t n = x.size(0), c = x.size(1), pad = reflect ? 2 : 0;
  const int64_t h = x.size(2), w = x.size(3), hp = h + pad, wp = w + pad;
  const int64_t th = (hp - 2) / 4, tw = (wp - 2) / 4, tiles = th * tw, nt = n * tiles;
  TORCH_CHECK(th >= 1 && tw >= 1 && hp == 4 * th + 2 && wp == 4 * tw + 2,
              reflect ? "x: height and width must be 4k" : "x: height and width must be 4k+2");
  check(v, 3, "out");
  TORCH_CHECK(v.size(0) == 36 && v.size(1) == c && v.size(2) == nt, "out: (36, C, N*th*tw) expected");
  const float* xp = x.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  const int64_t stride = c * nt;  // between the 36 transformed planes
  at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> rows(6 * wp), phase(4 * (tw + 1)), tile_buf(36 * tiles), padded(reflect ? 6 * wp : 0);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t img = plane / c, ch = plane % c;
      for (int64_t i = 0; i < th; ++i) {
        const float* d = xp + plane * h * w + 4 * i * wp;
        if (reflect) {  // the tile row's six padded rows, from the plane's rows (in L1: it is small)
          for (int k = 0; k < 6; ++k) {
            const float* src = xp + plane * h * w + reflected(4 * i + k, h) * w;
            float* dst = padded.data() + k * wp;
            dst[0] = src[1];
            std::copy_n(src, w, dst + 1);
            dst[w + 1] = src[w - 2];
          }
          d = padded.data();
        }
        float* r = rows.data();
        // vertical pass over whole rows: r[a][w] = sum_r BT[a][r] x[4i + r][w]
        GANFORGE_SIMD
        for (int64_t w = 0; w < wp; ++w) {
          apply_bt([&](int k) { return d[k * wp + w]; }, [&](int k, float val) { r[k * wp + w] = val; });
        }
        float* out = tile_buf.data() + i * tw;
        float* ph = phase.data();
        for (int k = 0; k < 6; ++k) {
          // split the row by column modulo 4, so tile j's six columns are ph[0..3][j], ph[0..1][j+1]
          const float* rk = r + k * wp;
          float *p0 = ph, *p1 = ph + (tw + 1), *p2 = ph + 2 * (tw + 1), *p3 = ph + 3 * (tw + 1);
          deinterleave4(rk, tw, p0, p1, p2, p3);
          p0[tw] = rk[4 * tw];
          p1[tw] = rk[4 * tw + 1];
          float* o = out + k * 6 * tiles;
          GANFORGE_SIMD
          for (int64_t j = 0; j < tw; ++j) {
            const float e[6] = {p0[j], p1[j], p2[j], p3[j], p0[j + 1], p1[j + 1]};
            apply_bt([&](int s) { return e[s]; }, [&](int col, float val) { o[col * tiles + j] = val; });
          }
        }
      }
      // whole runs of tiles to the 36 planes of V (scattered short stores cost more than this copy)
      scatter(tile_buf.data(), tiles, vp + ch * nt + img * tiles, stride);
    }
  });
}

at::Tensor input_tiles(at::Tensor x) {
  check(x, 4, "x");
  auto v = at::empty({36, x.size(1), x.size(0) * ((x.size(2) - 2) / 4) * ((x.size(3) - 2) / 4)}, x.options());
  transform_tiles(x, v);
  return v;
}

// the same into a buffer the caller reuses, where the tiles are not kept for a backward pass
void input_tiles_into(at::Tensor x, at::Tensor out) { transform_tiles(x, out); }

// x (N, C, 4th, 4tw), reflection-padded by one pixel on the fly
at::Tensor input_tiles_reflect(at::Tensor x) {
  check(x, 4, "x");
  auto v = at::empty({36, x.size(1), x.size(0) * (x.size(2) / 4) * (x.size(3) / 4)}, x.options());
  transform_tiles(x, v, true);
  return v;
}

void input_tiles_reflect_into(at::Tensor x, at::Tensor out) { transform_tiles(x, out, true); }

// dV (36, C, N*th*tw) -> dx (N, C, 4th+2, 4tw+2), the adjoint of input_tiles (overlaps summed); with
// `reflect`, dx (N, C, 4th, 4tw), the adjoint of input_tiles_reflect (the padding's gradient folded in)
at::Tensor tiles_backward(const at::Tensor& dv, int64_t n, int64_t hp, int64_t wp, bool reflect) {
  check(dv, 3, "dv");
  const int64_t c = dv.size(1), th = (hp - 2) / 4, tw = (wp - 2) / 4, tiles = th * tw, nt = n * tiles;
  TORCH_CHECK(dv.size(0) == 36 && dv.size(2) == nt && hp == 4 * th + 2 && wp == 4 * tw + 2, "dv: shape mismatch");
  const int64_t h = reflect ? hp - 2 : hp, w = reflect ? wp - 2 : wp;
  auto dx = reflect ? at::empty({n, c, h, w}, dv.options()) : at::zeros({n, c, hp, wp}, dv.options());
  const float* vp = dv.data_ptr<float>();
  float* xp = dx.data_ptr<float>();
  const int64_t stride = c * nt;
  at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> rows(6 * wp), per_column(6 * tw), tile_buf(36 * tiles), padded(reflect ? hp * wp : 0);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t img = plane / c, ch = plane % c;
      float* dst = xp + plane * hp * wp;
      if (reflect) {  // the padded plane's gradient in a small buffer, folded into dx below
        std::fill(padded.begin(), padded.end(), 0.f);
        dst = padded.data();
      }
      gather(vp + ch * nt + img * tiles, stride, tiles, tile_buf.data());
      for (int64_t i = 0; i < th; ++i) {
        float* r = rows.data();
        const float* in = tile_buf.data() + i * tw;
        for (int k = 0; k < 6; ++k) {
          // horizontal adjoint per tile (e[s][j] for column s of tile j), then summed into the row where
          // neighbouring tiles overlap
          float* e = per_column.data();
          const float* src = in + k * 6 * tiles;
          GANFORGE_SIMD
          for (int64_t j = 0; j < tw; ++j) {
            apply_b([&](int col) { return src[col * tiles + j]; }, [&](int s, float val) { e[s * tw + j] = val; });
          }
          // columns 4j and 4j+1 also get tile j-1's last two columns
          float* rk = r + k * wp;
          float* e0 = e;
          float* e1 = e + tw;
          const float *e4 = e + 4 * tw, *e5 = e + 5 * tw;
          rk[4 * tw] = e4[tw - 1];
          rk[4 * tw + 1] = e5[tw - 1];
          GANFORGE_SIMD
          for (int64_t j = 1; j < tw; ++j) {
            e0[j] += e4[j - 1];
            e1[j] += e5[j - 1];
          }
          interleave4(e0, e1, e + 2 * tw, e + 3 * tw, tw, rk);
        }
        // vertical adjoint over whole rows, summed into rows shared with the tile row above
        float* d = dst + 4 * i * wp;
        GANFORGE_SIMD
        for (int64_t w = 0; w < wp; ++w) {
          apply_b([&](int k) { return r[k * wp + w]; }, [&](int k, float val) { d[k * wp + w] += val; });
        }
      }
      if (reflect) {
        float* out = xp + plane * h * w;
        for (int64_t row = 0; row < h; ++row) std::copy_n(dst + (row + 1) * wp + 1, w, out + row * w);
        for (int64_t col = 0; col < wp; ++col) {  // the padded top and bottom rows, corners included
          out[reflected(0, h) * w + reflected(col, w)] += dst[col];
          out[reflected(hp - 1, h) * w + reflected(col, w)] += dst[(hp - 1) * wp + col];
        }
        for (int64_t row = 1; row < hp - 1; ++row) {  // the padded left and right columns
          out[(row - 1) * w + reflected(0, w)] += dst[row * wp];
          out[(row - 1) * w + reflected(wp - 1, w)] += dst[row * wp + wp - 1];
        }
      }
    }
  });
  return dx;
}

at::Tensor input_tiles_backward(at::Tensor dv, int64_t n, int64_t hp, int64_t wp) {
  return tiles_backward(dv, n, hp, wp, false);
}

// dV -> dx (N, C, h, w) of input_tiles_reflect
at::Tensor input_tiles_reflect_backward(at::Tensor dv, int64_t n, int64_t h, int64_t w) {
  return tiles_backward(dv, n, h + 2, w + 2, true);
}

// M (36, K, N*th*tw) (+ bias (K) or an empty tensor) -> y (N, K, 4th, 4tw)
at::Tensor output_tiles(at::Tensor m, at::Tensor bias, int64_t n, int64_t th, int64_t tw) {
  check(m, 3, "m");
  const int64_t k = m.size(1), tiles = th * tw, nt = n * tiles, h = 4 * th, w = 4 * tw;
  TORCH_CHECK(m.size(0) == 36 && m.size(2) == nt, "m: shape mismatch");
  const bool has_bias = bias.numel() > 0;
  if (has_bias) {
    check(bias, 1, "bias");
    TORCH_CHECK(bias.numel() == k, "bias: one value per output channel expected");
  }
  auto y = at::empty({n, k, h, w}, m.options());
  const float* mp = m.data_ptr<float>();
  const float* bp = has_bias ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const int64_t stride = k * nt;
  at::parallel_for(0, n * k, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> cols(24 * tw), phase(4 * tw), tile_buf(36 * tiles);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t img = plane / k, ch = plane % k;
      const float offset = has_bias ? bp[ch] : 0.f;
      float* dst = yp + plane * h * w;
      gather(mp + ch * nt + img * tiles, stride, tiles, tile_buf.data());
      for (int64_t i = 0; i < th; ++i) {
        const float* in = tile_buf.data() + i * tw;
        // vertical pass: p[r][b][j] = sum_a AT[r][a] M[a*6+b][j], contiguous over the tiles of the row
        float* p = cols.data();
        for (int col = 0; col < 6; ++col) {
          const float* src = in + col * tiles;
          GANFORGE_SIMD
          for (int64_t j = 0; j < tw; ++j) {
            apply_at([&](int row) { return src[row * 6 * tiles + j]; },
                     [&](int r, float val) { p[(r * 6 + col) * tw + j] = val; });
          }
        }
        for (int r = 0; r < 4; ++r) {
          // horizontal pass: y[4i + r][4j + s] = sum_b AT[s][b] p[r][b][j] (+ bias), one phase s at a time
          const float* pr = p + r * 6 * tw;
          float* ph = phase.data();
          GANFORGE_SIMD
          for (int64_t j = 0; j < tw; ++j) {
            apply_at([&](int col) { return pr[col * tw + j]; }, [&](int s, float val) { ph[s * tw + j] = val + offset; });
          }
          interleave4(ph, ph + tw, ph + 2 * tw, ph + 3 * tw, tw, dst + (4 * i + r) * w);
        }
      }
    }
  });
  return y;
}

// dy (N, K, 4th, 4tw) -> dM (36, K, N*th*tw), the adjoint of output_tiles
at::Tensor output_tiles_backward(at::Tensor dy) {
  check(dy, 4, "dy");
  const int64_t n = dy.size(0), k = dy.size(1), h = dy.size(2), w = dy.size(3);
  TORCH_CHECK(h % 4 == 0 && w % 4 == 0 && h > 0 && w > 0, "dy: height and width must be multiples of 4");
  const int64_t th = h / 4, tw = w / 4, tiles = th * tw, nt = n * tiles;
  auto dm = at::empty({36, k, nt}, dy.options());
  const float* gp = dy.data_ptr<float>();
  float* mp = dm.data_ptr<float>();
  const int64_t stride = k * nt;
  at::parallel_for(0, n * k, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> rows(6 * w), phase(4 * tw), tile_buf(36 * tiles);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t img = plane / k, ch = plane % k;
      for (int64_t i = 0; i < th; ++i) {
        const float* g = gp + plane * h * w + 4 * i * w;
        float* q = rows.data();
        GANFORGE_SIMD
        for (int64_t x = 0; x < w; ++x) {
          apply_a([&](int r) { return g[r * w + x]; }, [&](int row, float val) { q[row * w + x] = val; });
        }
        float* out = tile_buf.data() + i * tw;
        float* ph = phase.data();
        for (int row = 0; row < 6; ++row) {
          const float* qr = q + row * w;
          deinterleave4(qr, tw, ph, ph + tw, ph + 2 * tw, ph + 3 * tw);
          float* o = out + row * 6 * tiles;
          GANFORGE_SIMD
          for (int64_t j = 0; j < tw; ++j) {
            const float e[4] = {ph[j], ph[tw + j], ph[2 * tw + j], ph[3 * tw + j]};
            apply_a([&](int s) { return e[s]; }, [&](int col, float val) { o[col * tiles + j] = val; });
          }
        }
      }
      scatter(tile_buf.data(), tiles, mp + ch * nt + img * tiles, stride);
    }
  });
  return dm;
}

// G g G^T of (K, C, r, r) filters -> U (36, K, C), written into u
template <typename Fs>
void transform_weights(const at::Tensor& weight, at::Tensor& u) {
  constexpr int R = Fs::R;
  const int64_t k = weight.size(0), c = weight.size(1);
  check(u, 3, "out");
  TORCH_CHECK(u.size(0) == 36 && u.size(1) == k && u.size(2) == c, "out: (36, K, C) expected");
  const float* wp = weight.data_ptr<float>();
  float* up = u.data_ptr<float>();
  const int64_t stride = k * c;
  at::parallel_for(0, k, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> taps(R * R * c), half(6 * R * c), out_buf(36 * c);
    for (int64_t f = begin; f < end; ++f) {
      const float* src = wp + f * c * R * R;
      GANFORGE_SIMD
      for (int64_t ch = 0; ch < c; ++ch)
        for (int t = 0; t < R * R; ++t) taps[t * c + ch] = src[ch * R * R + t];
      // rows: half[a][col][ch] = sum_r G[a][r] g[r][col]
      for (int col = 0; col < R; ++col) {
        GANFORGE_SIMD
        for (int64_t ch = 0; ch < c; ++ch) {
          Fs::g([&](int r) { return taps[(r * R + col) * c + ch]; },
                [&](int a, float val) { half[(a * R + col) * c + ch] = val; });
        }
      }
      // columns: U[a*6+b][f][ch] = sum_col G[b][col] half[a][col]
      float* out = out_buf.data();
      for (int row = 0; row < 6; ++row) {
        GANFORGE_SIMD
        for (int64_t ch = 0; ch < c; ++ch) {
          Fs::g([&](int col) { return half[(row * R + col) * c + ch]; },
                [&](int b, float val) { out[(row * 6 + b) * c + ch] = val; });
        }
      }
      scatter(out, c, up + f * c, stride);
    }
  });
}

// the filter side of (K, C, r, r) filters: 3 or 4
int64_t filter_side(const at::Tensor& weight) {
  check(weight, 4, "weight");
  const int64_t r = weight.size(2);
  TORCH_CHECK(weight.size(3) == r && (r == 3 || r == 4), "weight: filters must be 3x3 or 4x4");
  return r;
}

void transform_weights_of_side(const at::Tensor& weight, at::Tensor& u) {
  if (filter_side(weight) == 3) {
    transform_weights<Filters3>(weight, u);
  } else {
    transform_weights<Filters4>(weight, u);
  }
}

at::Tensor weight_transform(at::Tensor weight) {
  check(weight, 4, "weight");
  auto u = at::empty({36, weight.size(0), weight.size(1)}, weight.options());
  transform_weights_of_side(weight, u);
  return u;
}

// the same into a buffer the caller reuses (a training step transforms every filter bank twice; fresh
// 9 MB results each time fragmented the heap by hundreds of MB)
void weight_transform_into(at::Tensor weight, at::Tensor out) { transform_weights_of_side(weight, out); }

// dU (36, K, C) -> dW (K, C, r, r), the adjoint of weight_transform
template <typename Fs>
at::Tensor grad_weights(const at::Tensor& du) {
  constexpr int R = Fs::R;
  const int64_t k = du.size(1), c = du.size(2);
  auto dw = at::empty({k, c, R, R}, du.options());
  const float* up = du.data_ptr<float>();
  float* wp = dw.data_ptr<float>();
  const int64_t stride = k * c;
  at::parallel_for(0, k, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> taps(R * R * c), half(6 * R * c), in_buf(36 * c);
    for (int64_t f = begin; f < end; ++f) {
      const float* in = in_buf.data();
      gather(up + f * c, stride, c, in_buf.data());
      for (int row = 0; row < 6; ++row) {
        GANFORGE_SIMD
        for (int64_t ch = 0; ch < c; ++ch) {
          Fs::gt([&](int b) { return in[(row * 6 + b) * c + ch]; },
                 [&](int col, float val) { half[(row * R + col) * c + ch] = val; });
        }
      }
      for (int col = 0; col < R; ++col) {
        GANFORGE_SIMD
        for (int64_t ch = 0; ch < c; ++ch) {
          Fs::gt([&](int a) { return half[(a * R + col) * c + ch]; },
                 [&](int r, float val) { taps[(r * R + col) * c + ch] = val; });
        }
      }
      float* dst = wp + f * c * R * R;
      GANFORGE_SIMD
      for (int64_t ch = 0; ch < c; ++ch)
        for (int t = 0; t < R * R; ++t) dst[ch * R * R + t] = taps[t * c + ch];
    }
  });
  return dw;
}

at::Tensor weight_transform_backward(at::Tensor du, int64_t r) {
  check(du, 3, "du");
  TORCH_CHECK(du.size(0) == 36, "du: shape mismatch");
  TORCH_CHECK(r == 3 || r == 4, "r: filters must be 3x3 or 4x4");
  return r == 3 ? grad_weights<Filters3>(du) : grad_weights<Filters4>(du);
}

TORCH_LIBRARY(ganforge_winograd, lib) {
  lib.def("input_tiles(Tensor x) -> Tensor");
  lib.def("input_tiles_into(Tensor x, Tensor(a!) out) -> ()");
  lib.def("input_tiles_backward(Tensor dv, int n, int hp, int wp) -> Tensor");
  lib.def("input_tiles_reflect(Tensor x) -> Tensor");
  lib.def("input_tiles_reflect_into(Tensor x, Tensor(a!) out) -> ()");
  lib.def("input_tiles_reflect_backward(Tensor dv, int n, int h, int w) -> Tensor");
  lib.def("output_tiles(Tensor m, Tensor bias, int n, int th, int tw) -> Tensor");
  lib.def("output_tiles_backward(Tensor dy) -> Tensor");
  lib.def("weight_transform(Tensor weight) -> Tensor");
  lib.def("weight_transform_into(Tensor weight, Tensor(a!) out) -> ()");
  lib.def("weight_transform_backward(Tensor du, int r) -> Tensor");
}

TORCH_LIBRARY_IMPL(ganforge_winograd, CPU, lib) {
  lib.impl("input_tiles", &input_tiles);
  lib.impl("input_tiles_into", &input_tiles_into);
  lib.impl("input_tiles_backward", &input_tiles_backward);
  lib.impl("input_tiles_reflect", &input_tiles_reflect);
  lib.impl("input_tiles_reflect_into", &input_tiles_reflect_into);
  lib.impl("input_tiles_reflect_backward", &input_tiles_reflect_backward);
  lib.impl("output_tiles", &output_tiles);
  lib.impl("output_tiles_backward", &output_tiles_backward);
  lib.impl("weight_transform", &weight_transform);
  lib.impl("weight_transform_into", &weight_transform_into);
  lib.impl("weight_transform_backward", &weight_transform_backward);
}
