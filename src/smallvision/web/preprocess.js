// The checkpoint's preprocessing rule, as `smallvision predict` applies it (src/smallvision/predict.py),
// for the exported web page: decoded pixels in, the model's normalised input (float32, C×H×W) out.
//
// Written to give Python's numbers, not just similar ones: Pillow's resampling (ImagingResample: a
// separable convolution, bilinear, bicubic or Lanczos, its support widened by the downscale factor, 22-bit
// fixed-point weights, 8-bit rounding between the passes, the horizontal pass first as
// data/folder.py's resize_hv pins it), Pillow's RGB -> L
// (ITU-R 601-2 luma in 16-bit fixed point), Python's round-half-to-even, NumPy's median, and for digit
// models the MNIST-style crop, fit into a 20/28 box and centre of mass. tests/test_web.py runs this file
// in Node on the same pixels as Python and asserts the same output.
//
// One gap, said so in the exported README: Pillow decodes a JPEG at 1/2, 1/4 or 1/8 of its size inside
// libjpeg when the photo is at least twice the model's input on both sides (JPEG draft mode); a
// browser decodes it whole. The page then shrinks the decoded photo to that same size with the
// browser's own high-quality resize before this rule runs: the result is close, not equal.
(function (root) {
  "use strict";

  const PRECISION_BITS = 32 - 8 - 2;

  // Python's round(): halves go to the even neighbour
  function roundHalfEven(x) {
    const f = Math.floor(x), d = x - f;
    if (d < 0.5) return f;
    if (d > 0.5) return f + 1;
    return f % 2 === 0 ? f : f + 1;
  }

  const FILTERS = {
    bilinear: { support: 1.0, fn: (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; } },
    bicubic: {  // Keys' cubic convolution, a = -0.5
      support: 2.0,
      fn: (x) => {
        const a = -0.5;
        x = Math.abs(x);
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
      },
    },
    lanczos: {
      support: 3.0,
      fn: (x) => {
        const sinc = (v) => { if (v === 0.0) return 1.0; v *= Math.PI; return Math.sin(v) / v; };
        return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
      },
    },
  };

  // Pillow's precompute_coeffs + normalize_coeffs_8bpc: for each output index its first input
  // index, how many inputs, and their integer weights
  function coefficients(inSize, outSize, filter) {
    const scale = inSize / outSize;
    const filterscale = Math.max(scale, 1.0);
    const support = filter.support * filterscale;
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2);
    const kk = new Int32Array(outSize * ksize);
    const pre = new Float64Array(ksize);
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const ss = 1.0 / filterscale;
      let xmin = Math.trunc(center - support + 0.5);
      if (xmin < 0) xmin = 0;
      let xmax = Math.trunc(center + support + 0.5);
      if (xmax > inSize) xmax = inSize;
      xmax -= xmin;
      let ww = 0.0;
      for (let x = 0; x < xmax; x++) {
        const w = filter.fn((x + xmin - center + 0.5) * ss);
        pre[x] = w;
        ww += w;
      }
      for (let x = 0; x < xmax; x++) {
        const w = ww !== 0.0 ? pre[x] / ww : pre[x];
        kk[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS))
                                   : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
      }
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    return { ksize, bounds, kk };
  }

  function clip8(v) {
    if (v >= (1 << PRECISION_BITS) * 256) return 255;
    if (v <= 0) return 0;
    return Math.floor(v / (1 << PRECISION_BITS));
  }

  // Pillow's Image.resize((outW, outH), filter) of an 8-bit image with `ch` interleaved channels
  function resize(src, w, h, ch, outW, outH, filterName) {
    if (w === outW && h === outH) return src.slice();
    const filter = FILTERS[filterName];
    const needH = outW !== w, needV = outH !== h;
    const vert = coefficients(h, outH, filter);
    const horiz = coefficients(w, outW, filter);
    let img = src, iw = w, ih = h;
    if (needH) {
      // only the rows the vertical pass reads
      const first = vert.bounds[0], last = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
      const rows = needV ? last - first : h;
      const y0 = needV ? first : 0;
      const out = new Uint8ClampedArray(outW * rows * ch);
      for (let y = 0; y < rows; y++) {
        const rowIn = (y + y0) * w * ch;
        for (let xx = 0; xx < outW; xx++) {
          const xmin = horiz.bounds[xx * 2], n = horiz.bounds[xx * 2 + 1], k = xx * horiz.ksize;
          for (let c = 0; c < ch; c++) {
            let ss = 1 << (PRECISION_BITS - 1);
            for (let x = 0; x < n; x++) ss += src[rowIn + (x + xmin) * ch + c] * horiz.kk[k + x];
            out[(y * outW + xx) * ch + c] = clip8(ss);
          }
        }
      }
      img = out; iw = outW; ih = rows;
      if (needV) for (let i = 0; i < outH; i++) vert.bounds[i * 2] -= first;
    }
    if (!needV) return img;
    const out = new Uint8ClampedArray(iw * outH * ch);
    for (let yy = 0; yy < outH; yy++) {
      const ymin = vert.bounds[yy * 2], n = vert.bounds[yy * 2 + 1], k = yy * vert.ksize;
      for (let x = 0; x < iw; x++) {
        for (let c = 0; c < ch; c++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let y = 0; y < n; y++) ss += img[((y + ymin) * iw + x) * ch + c] * vert.kk[k + y];
          out[(yy * iw + x) * ch + c] = clip8(ss);
        }
      }
    }
    return out;
  }

  function crop(src, w, h, ch, left, top, cw, chh) {
    const out = new Uint8ClampedArray(cw * chh * ch);
    for (let y = 0; y < chh; y++) {
      const from = ((y + top) * w + left) * ch;
      out.set(src.subarray(from, from + cw * ch), y * cw * ch);
    }
    return out;
  }

  // predict's resize_center_crop: the short side to `size` (bilinear), then the centre square
  function resizeCenterCrop(src, w, h, ch, size) {
    const s = size / Math.min(w, h);
    const nw = Math.max(size, roundHalfEven(w * s)), nh = Math.max(size, roundHalfEven(h * s));
    const r = resize(src, w, h, ch, nw, nh, "bilinear");
    const left = Math.floor((nw - size) / 2), top = Math.floor((nh - size) / 2);
    return crop(r, nw, nh, ch, left, top, size, size);
  }

  // RGBA (as a canvas gives it) -> RGB or Pillow's L; transparent pixels composited on white
  function fromRGBA(rgba, w, h, channels) {
    const out = new Uint8ClampedArray(w * h * channels);
    for (let i = 0, j = 0; i < w * h; i++, j += 4) {
      let r = rgba[j], g = rgba[j + 1], b = rgba[j + 2];
      const a = rgba[j + 3];
      if (a !== 255) {  // on white, as Image.alpha_composite with an opaque white background
        r = Math.round((r * a + 255 * (255 - a)) / 255);
        g = Math.round((g * a + 255 * (255 - a)) / 255);
        b = Math.round((b * a + 255 * (255 - a)) / 255);
      }
      if (channels === 1) out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
      else { out[i * 3] = r; out[i * 3 + 1] = g; out[i * 3 + 2] = b; }
    }
    return out;
  }

  function median(values) {
    const v = Float64Array.from(values).sort();
    const n = v.length, m = n >> 1;
    return n % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  }

  function border(g, w, h) {
    const b = [];
    for (let x = 0; x < w; x++) b.push(g[x]);
    for (let x = 0; x < w; x++) b.push(g[(h - 1) * w + x]);
    for (let y = 0; y < h; y++) b.push(g[y * w]);
    for (let y = 0; y < h; y++) b.push(g[y * w + w - 1]);
    return b;
  }

  const toUint8 = (g) => Uint8ClampedArray.from(g, (v) => Math.trunc(v * 255));  // numpy's astype(uint8) of [0, 255]

  // predict.mnist_style: light-on-dark gray in [0, 1] (w × h) -> size × size, ink cropped, fitted
  // into a size·20/28 box, its centre of mass at the centre
  function mnistStyle(g0, w, h, size) {
    const med = median(border(g0, w, h));
    let top = -Infinity;
    for (const v of g0) top = Math.max(top, v);
    const span = Math.max(top - med, 1e-6);
    const g = new Float64Array(g0.length);
    for (let i = 0; i < g.length; i++) {
      let v = Math.min(Math.max((g0[i] - med) / span, 0), 1);
      g[i] = v < 0.15 ? 0 : v;
    }
    let r0 = h, r1 = -1, c0 = w, c1 = -1;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (g[y * w + x] > 0.3) {
      r0 = Math.min(r0, y); r1 = Math.max(r1, y); c0 = Math.min(c0, x); c1 = Math.max(c1, x);
    }
    if (r1 < 0) return Float64Array.from(resize(toUint8(g), w, h, 1, size, size, "bilinear"), (v) => v / 255);
    const cw = c1 - c0 + 1, chh = r1 - r0 + 1;
    const cropped = new Float64Array(cw * chh);
    for (let y = 0; y < chh; y++) for (let x = 0; x < cw; x++) cropped[y * cw + x] = g[(y + r0) * w + x + c0];
    const box = Math.max(1, roundHalfEven(size * 20 / 28));
    const s = box / Math.max(chh, cw);
    const nh = Math.max(1, roundHalfEven(chh * s)), nw = Math.max(1, roundHalfEven(cw * s));
    const small = resize(toUint8(cropped), cw, chh, 1, nw, nh, "lanczos");
    const canvas = new Float64Array(size * size);
    const t = Math.floor((size - nh) / 2), l = Math.floor((size - nw) / 2);
    for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) canvas[(y + t) * size + x + l] = small[y * nw + x] / 255;
    let total = 0, sy = 0, sx = 0;
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
      const v = canvas[y * size + x];
      total += v; sy += y * v; sx += x * v;
    }
    if (total <= 0) return canvas;
    const dy = roundHalfEven((size - 1) / 2 - sy / total), dx = roundHalfEven((size - 1) / 2 - sx / total);
    const rolled = new Float64Array(size * size);  // np.roll: what leaves one side comes in at the other
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
      const ny = ((y + dy) % size + size) % size, nx = ((x + dx) % size + size) % size;
      rolled[ny * size + nx] = canvas[y * size + x];
    }
    return rolled;
  }

  // JPEG draft mode's reduction (Pillow's JpegImageFile.draft): 8, 4, 2 or 1, the largest that keeps
  // both sides at `size` or more
  function draftScale(w, h, size) {
    const scale = Math.min(Math.floor(w / size), Math.floor(h / size));
    for (const a of [8, 4, 2]) if (scale >= a) return a;
    return 1;
  }

  // The model input for decoded RGBA pixels (w × h), by the rule in model.json's "preprocessing":
  // Float32Array, channels × height × width, normalised by mean/std
  function preprocess(rgba, w, h, rule) {
    const c = rule.channels, H = rule.height, W = rule.width, size = Math.min(H, W);
    const px = fromRGBA(rgba, w, h, c);
    let arr;  // values in [0, 1], H × W × c
    if (c === 1) {
      let g = Float64Array.from(px, (v) => v / 255);
      const med = median(border(g, w, h));
      if (rule.dark_background && med > 0.5) g = g.map((v) => 1.0 - v);
      if (rule.digit_style && H === W) arr = mnistStyle(g, w, h, H);
      else {
        const sq = resizeCenterCrop(toUint8(g), w, h, 1, size);
        arr = Float64Array.from(resize(sq, size, size, 1, W, H, "bicubic"), (v) => v / 255);
      }
    } else {
      const sq = resizeCenterCrop(px, w, h, 3, size);
      arr = Float32Array.from(resize(sq, size, size, 3, W, H, "bicubic"), (v) => Math.fround(v / 255));
    }
    const out = new Float32Array(c * H * W);
    for (let k = 0; k < c; k++) {
      const m = Math.fround(rule.mean[k]), sd = Math.fround(rule.std[k]);
      for (let i = 0; i < H * W; i++) out[k * H * W + i] = Math.fround(Math.fround(Math.fround(arr[i * c + k]) - m) / sd);
    }
    return out;
  }

  // Largest photo the page decodes (a 50-MP phone photo is 50e6): beyond it, a message
  const MAX_PIXELS = 120e6;

  // A file -> its pixels as predict reads them: decoded by the browser (EXIF orientation applied,
  // colour profile not, as Pillow), a big JPEG first shrunk to its draft-mode size (see above)
  async function decode(file, rule) {
    const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
    const jpeg = head[0] === 0xff && head[1] === 0xd8;
    const brand = String.fromCharCode(...head.slice(4, 12));
    let bmp;
    try {
      bmp = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none",
                                            imageOrientation: "from-image" });
    } catch (e) {
      if (brand.startsWith("ftyphei") || brand.startsWith("ftypmif") || brand.startsWith("ftyphe"))
        throw new Error("a HEIC photo, which this browser does not read (Safari does); convert it to JPEG, or use `smallvision predict`");
      throw new Error("not an image this browser can read");
    }
    let w = bmp.width, h = bmp.height, note = "";
    if (w * h > MAX_PIXELS) {
      bmp.close();
      throw new Error(`${(w * h / 1e6).toFixed(0)} MP is more than this page decodes (${MAX_PIXELS / 1e6} MP)`);
    }
    const a = jpeg && rule.jpeg_draft_side ? draftScale(w, h, rule.jpeg_draft_side) : 1;
    if (a > 1) {
      const small = await createImageBitmap(bmp, { resizeWidth: Math.ceil(w / a), resizeHeight: Math.ceil(h / a),
                                                   resizeQuality: "high" });
      bmp.close();
      bmp = small;
      note = `${w}×${h}, read at 1/${a}`;
      w = bmp.width; h = bmp.height;
    }
    const canvas = new OffscreenCanvas(w, h);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bmp, 0, 0);
    bmp.close();
    return { rgba: ctx.getImageData(0, 0, w, h).data, w, h, note };
  }

  const SV = { preprocess, decode, resize, resizeCenterCrop, fromRGBA, mnistStyle, draftScale, roundHalfEven, median };
  if (typeof module !== "undefined" && module.exports) module.exports = SV;
  else root.SV = SV;

  // As the page's worker: files and pixels in, model inputs out, off the page's thread (a big photo
  // never freezes the tab)
  if (typeof WorkerGlobalScope !== "undefined" && root instanceof WorkerGlobalScope) {
    root.onmessage = async (event) => {
      const m = event.data;
      try {
        const px = m.file ? await decode(m.file, m.rule) : { rgba: m.rgba, w: m.w, h: m.h, note: "" };
        const x = preprocess(px.rgba, px.w, px.h, m.rule);
        root.postMessage({ id: m.id, x, w: px.w, h: px.h, note: px.note }, [x.buffer]);
      } catch (e) {
        root.postMessage({ id: m.id, error: String((e && e.message) || e) });
      }
    };
  }
})(this);
