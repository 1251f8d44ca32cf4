//! Signal-processing core ops -> ONNX (DFT, STFT, MelWeightMatrix exist from opset 17).

use super::ctx::{LowerCtx, LowerResult, attr_i};

/// DFT-20 takes the axis as an input; DFT-17 as an attribute (so it must be constant there).
pub fn dft(c: &mut LowerCtx, inverse: bool, onesided: bool) -> LowerResult {
    c.require_op("DFT")?;
    let attrs = vec![attr_i("inverse", inverse as i64), attr_i("onesided", onesided as i64)];
    let (x, n, out) = (c.input(0), c.input(1), c.output(0));
    if c.opset >= 20 {
        let axis = c.input(2);
        c.emit("DFT", vec![x, n, axis], vec![out], attrs);
        return Ok(());
    }
    let Some(axis) = c.const_input(2).and_then(|t| t.to_i64_vec().ok()).and_then(|v| v.first().copied()) else {
        return Err(c.problem("a DFT axis that is not a constant needs opset 20", Some(20)));
    };
    let rank = c.input_type(0).and_then(|t| t.shape()).map(|s| s.rank() as i64);
    let axis = match rank {
        Some(r) if axis < 0 => axis + r,
        _ => axis,
    };
    let mut attrs = attrs;
    attrs.push(attr_i("axis", axis));
    c.emit("DFT", vec![x, n], vec![out], attrs);
    Ok(())
}

pub fn stft(c: &mut LowerCtx, onesided: bool) -> LowerResult {
    c.require_op("STFT")?;
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("STFT", inputs, vec![out], vec![attr_i("onesided", onesided as i64)]);
    Ok(())
}

pub fn mel_weight_matrix(c: &mut LowerCtx, dtype: ferry_ir::DType) -> LowerResult {
    c.require_op("MelWeightMatrix")?;
    let (inputs, out) = (c.inputs(), c.output(0));
    c.emit("MelWeightMatrix", inputs, vec![out], vec![attr_i("output_datatype", dtype.onnx_code() as i64)]);
    Ok(())
}
