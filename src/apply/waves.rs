//! Dependency waves, apart from what runs in them: which nodes of one phase may start now. A node
//! starts only once every node it depends on (within the phase) is done, in plan order, never more
//! than the room left; for deletes the dependencies run the other way (a node goes only once
//! everything that depended on it is gone). Knows nothing of resources, providers or state.

use std::collections::{BTreeMap, BTreeSet};

/// The nodes of one phase not started yet, and what each still waits for.
pub struct Waves<'a, K: Ord> {
    /// In plan order.
    pending: Vec<&'a K>,
    waiting_on: BTreeMap<&'a K, BTreeSet<&'a K>>,
}

impl<'a, K: Ord> Waves<'a, K> {
    /// `nodes` in plan order, each with what it depends on (nodes outside the list are ignored);
    /// `reverse`: the dependencies run the other way.
    pub fn new<D>(nodes: &[(&'a K, D)], reverse: bool) -> Waves<'a, K>
    where
        D: IntoIterator<Item = &'a K> + Clone,
    {
        let members: BTreeSet<&K> = nodes.iter().map(|(k, _)| *k).collect();
        let mut waiting_on: BTreeMap<&K, BTreeSet<&K>> = nodes.iter().map(|(k, _)| (*k, BTreeSet::new())).collect();
        for (node, deps) in nodes {
            for dep in deps.clone().into_iter().filter(|d| members.contains(d)) {
                let (from, to) = if reverse { (dep, *node) } else { (*node, dep) };
                if let Some(set) = waiting_on.get_mut(from) {
                    set.insert(to);
                }
            }
        }
        Waves { pending: nodes.iter().map(|(k, _)| *k).collect(), waiting_on }
    }

    /// Up to `room` nodes that wait for nothing, in plan order; they are no longer pending.
    pub fn take_ready(&mut self, room: usize) -> Vec<&'a K> {
        let mut ready = Vec::new();
        let mut i = 0;
        while i < self.pending.len() && ready.len() < room {
            if self.waiting_on[self.pending[i]].is_empty() {
                ready.push(self.pending.remove(i));
            } else {
                i += 1;
            }
        }
        ready
    }

    /// `node` is done: nothing waits for it any more.
    pub fn done(&mut self, node: &K) {
        for set in self.waiting_on.values_mut() {
            set.remove(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_start_once_their_dependencies_are_done_in_plan_order_within_the_room() {
        let (a, b, c, d) = ("a", "b", "c", "d");
        // b and c depend on a; d on c; "x" is outside the phase.
        let nodes = [(&a, vec![]), (&b, vec![&a]), (&c, vec![&a, &"x"]), (&d, vec![&c])];
        let mut w = Waves::new(&nodes, false);
        assert_eq!(w.take_ready(10), [&a]);
        assert!(w.take_ready(10).is_empty(), "b and c wait for a");
        w.done(&a);
        assert_eq!(w.take_ready(1), [&b], "the room is one");
        assert_eq!(w.take_ready(1), [&c]);
        w.done(&c);
        assert_eq!(w.take_ready(10), [&d]);
    }

    #[test]
    fn reversed_a_node_goes_once_what_depended_on_it_is_gone() {
        let (a, b) = ("a", "b");
        let nodes = [(&a, vec![]), (&b, vec![&a])];
        let mut w = Waves::new(&nodes, true);
        assert_eq!(w.take_ready(10), [&b]);
        w.done(&b);
        assert_eq!(w.take_ready(10), [&a]);
    }
}
