//! Which untested commits between the failing and the passing side to restart
//! (PyTorch's `GapBisectionPlanner`): all of them without a limit; with one, the middle
//! of the largest uncovered gap, again and again, until the budget is spent.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// `covered[i]`: commit `i` of the gap already has events (pending ones included). The
/// budget is `limit` minus the commits already covered. Returns the indices to restart,
/// ascending. Ties go to the lower index.
pub fn plan(covered: &[bool], limit: Option<usize>) -> Vec<usize> {
    let uncovered = || (0..covered.len()).filter(|&i| !covered[i]);
    let Some(limit) = limit else {
        return uncovered().collect();
    };
    let already = covered.iter().filter(|c| **c).count();
    let mut budget = limit.saturating_sub(already);
    // Max-heap on length, then the lower start first: (len, Reverse(lo), hi).
    let mut heap: BinaryHeap<(usize, Reverse<usize>, usize)> = BinaryHeap::new();
    let mut start: Option<usize> = None;
    for i in 0..=covered.len() {
        let open = i < covered.len() && !covered[i];
        match (open, start) {
            (true, None) => start = Some(i),
            (false, Some(lo)) => {
                heap.push((i - lo, Reverse(lo), i - 1));
                start = None;
            }
            _ => {}
        }
    }
    let mut chosen = Vec::new();
    while budget > 0 {
        let Some((_, Reverse(lo), hi)) = heap.pop() else {
            break;
        };
        let mid = (lo + hi) / 2;
        chosen.push(mid);
        budget -= 1;
        if mid > lo {
            heap.push((mid - lo, Reverse(lo), mid - 1));
        }
        if mid < hi {
            heap.push((hi - mid, Reverse(mid + 1), hi));
        }
    }
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn without_a_limit_every_uncovered_commit() {
        assert_eq!(plan(&[false, true, false, false], None), vec![0, 2, 3]);
        assert_eq!(plan(&[], None), Vec::<usize>::new());
    }

    #[test]
    fn a_limit_takes_midpoints_of_the_largest_gaps() {
        // One gap of 7: its middle (3), then the middles of the halves (1, then 5).
        assert_eq!(plan(&[false; 7], Some(1)), vec![3]);
        assert_eq!(plan(&[false; 7], Some(2)), vec![1, 3]);
        assert_eq!(plan(&[false; 7], Some(3)), vec![1, 3, 5]);
        // Two gaps (3 and 1) around a covered commit: the larger first, and the covered
        // commit uses up one unit of the budget.
        assert_eq!(plan(&[false, false, false, true, false], Some(2)), vec![1]);
        // Then the gaps left are one commit each: the lowest first.
        assert_eq!(
            plan(&[false, false, false, true, false], Some(3)),
            vec![0, 1]
        );
    }

    #[test]
    fn ties_go_to_the_lower_index_and_even_gaps_to_the_lower_middle() {
        assert_eq!(plan(&[false, false, true, false, false], Some(2)), vec![0]);
        assert_eq!(plan(&[false; 4], Some(1)), vec![1]);
    }

    #[test]
    fn a_zero_or_spent_budget_restarts_nothing() {
        assert!(plan(&[false; 3], Some(0)).is_empty());
        assert!(plan(&[true, false, true], Some(2)).is_empty());
    }
}
