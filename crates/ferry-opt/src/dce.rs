//! Dead-code elimination: nodes none of whose outputs reach a graph output (or a value a nested
//! graph reads by name) are removed, last to first so that whole dead chains go in one sweep.

use crate::editor::Editor;

pub fn eliminate_dead(ed: &mut Editor) -> usize {
    let mut removed = 0;
    for n in (0..ed.g.nodes.len()).rev() {
        if ed.dead[n] {
            continue;
        }
        let live = ed.g.nodes[n].outputs.iter().flatten().any(|o| ed.uses(*o) > 0 || !ed.is_private(*o));
        if !live {
            ed.kill(n);
            removed += 1;
        }
    }
    removed
}
