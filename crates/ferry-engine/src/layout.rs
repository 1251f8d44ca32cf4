//! Layout steps on raw element bytes (any element type of whole bytes).

/// `y = transpose(x, perm)` for `x` of `in_shape`, elements of `elem` bytes.
pub(crate) fn transpose(x: &[u8], y: &mut [u8], elem: usize, in_shape: &[usize], perm: &[usize]) {
    let r = in_shape.len();
    let out_shape: Vec<usize> = perm.iter().map(|p| in_shape[*p]).collect();
    let n: usize = out_shape.iter().product();
    if n == 0 {
        return;
    }
    let mut in_strides = vec![1usize; r];
    for k in (0..r.saturating_sub(1)).rev() {
        in_strides[k] = in_strides[k + 1] * in_shape[k + 1];
    }
    // Input stride of each output axis; the last output axis is the inner loop.
    let strides: Vec<usize> = perm.iter().map(|p| in_strides[*p]).collect();
    let inner = *out_shape.last().unwrap_or(&1);
    let inner_stride = *strides.last().unwrap_or(&1);
    let outer = &out_shape[..r.saturating_sub(1)];
    let mut idx = vec![0usize; outer.len()];
    let mut src = 0usize;
    let mut dst = 0usize;
    for _ in 0..n / inner.max(1) {
        match elem {
            4 => copy_strided::<4>(x, y, src, inner_stride, dst, inner),
            8 => copy_strided::<8>(x, y, src, inner_stride, dst, inner),
            2 => copy_strided::<2>(x, y, src, inner_stride, dst, inner),
            1 => copy_strided::<1>(x, y, src, inner_stride, dst, inner),
            _ => {
                for i in 0..inner {
                    let s = (src + i * inner_stride) * elem;
                    y[(dst + i) * elem..(dst + i + 1) * elem].copy_from_slice(&x[s..s + elem]);
                }
            }
        }
        dst += inner;
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            src += strides[k];
            if idx[k] < outer[k] {
                break;
            }
            src -= strides[k] * outer[k];
            idx[k] = 0;
        }
    }
}

#[inline(always)]
fn copy_strided<const E: usize>(x: &[u8], y: &mut [u8], src: usize, stride: usize, dst: usize, n: usize) {
    let out = &mut y[dst * E..(dst + n) * E];
    for (i, chunk) in out.chunks_exact_mut(E).enumerate() {
        let s = (src + i * stride) * E;
        chunk.copy_from_slice(&x[s..s + E]);
    }
}

/// Concatenation: for each of `outer` blocks, each part's next `run` bytes in order.
pub(crate) fn concat(parts: &[(&[u8], usize)], outer: usize, y: &mut [u8]) {
    let mut at = 0;
    for o in 0..outer {
        for (src, run) in parts {
            y[at..at + run].copy_from_slice(&src[o * run..(o + 1) * run]);
            at += run;
        }
    }
}

/// `y[i] = table[indices[i]]` (rows of `row_bytes`); negative indices count from the end.
pub(crate) fn gather_rows(
    table: &[u8],
    rows: usize,
    row_bytes: usize,
    indices: &[u8],
    wide: bool,
    y: &mut [u8],
) -> Result<(), String> {
    let width = if wide { 8 } else { 4 };
    for (i, raw) in indices.chunks_exact(width).enumerate() {
        let k = if wide {
            i64::from_le_bytes(raw.try_into().expect("8 bytes"))
        } else {
            i32::from_le_bytes(raw.try_into().expect("4 bytes")) as i64
        };
        let r = if k < 0 { k + rows as i64 } else { k };
        if r < 0 || r >= rows as i64 {
            return Err(format!("index {k} is out of range for an axis of {rows}"));
        }
        let r = r as usize;
        y[i * row_bytes..(i + 1) * row_bytes].copy_from_slice(&table[r * row_bytes..(r + 1) * row_bytes]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_index_arithmetic() {
        let shape = [2usize, 3, 4];
        let x: Vec<u8> = (0..24u32).flat_map(|v| v.to_le_bytes()).collect();
        for perm in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 2, 1], [2, 0, 1]] {
            let mut y = vec![0u8; x.len()];
            transpose(&x, &mut y, 4, &shape, &perm);
            let out_shape: Vec<usize> = perm.iter().map(|p| shape[*p]).collect();
            let got: Vec<u32> = y.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
            let mut k = 0;
            for a in 0..out_shape[0] {
                for b in 0..out_shape[1] {
                    for c in 0..out_shape[2] {
                        let mut idx = [0; 3];
                        idx[perm[0]] = a;
                        idx[perm[1]] = b;
                        idx[perm[2]] = c;
                        assert_eq!(got[k], (idx[0] * 12 + idx[1] * 4 + idx[2]) as u32, "{perm:?}");
                        k += 1;
                    }
                }
            }
        }
    }
}
