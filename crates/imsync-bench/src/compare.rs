//! Two imsync builds under the same scenario, run pair after pair in alternating order (A then
//! B, then B then A, ...). On a shared virtual machine the rate of one run drifts from the next
//! by more than most changes move it (send-par here: ±15% between runs of one build, and the
//! hypervisor's steal comes and goes within minutes). Each pair's two runs sit minutes apart at
//! most and swap places every other pair, so the median of the per-pair ratios B/A says what
//! one run of each cannot.

use serde::Serialize;

/// One pair's headline figures (higher is better), with the steal share each run saw.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pair {
    pub a: f64,
    pub b: f64,
    pub a_steal: Option<f64>,
    pub b_steal: Option<f64>,
}

impl Pair {
    pub fn ratio(&self) -> Option<f64> {
        (self.a > 0.0).then(|| self.b / self.a)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Per-pair B/A, sorted.
    pub ratios: Vec<f64>,
    pub median: Option<f64>,
    /// How many pairs B won.
    pub b_ahead: usize,
}

pub fn summarize(pairs: &[Pair]) -> Summary {
    let mut ratios: Vec<f64> = pairs.iter().filter_map(Pair::ratio).collect();
    ratios.sort_by(f64::total_cmp);
    let median = match ratios.len() {
        0 => None,
        n if n % 2 == 1 => Some(ratios[n / 2]),
        n => Some((ratios[n / 2 - 1] + ratios[n / 2]) / 2.0),
    };
    Summary {
        b_ahead: ratios.iter().filter(|&&r| r > 1.0).count(),
        ratios,
        median,
    }
}

/// Whether the pair at `index` runs B first: every other pair, so that neither build always
/// gets the machine as the other left it.
pub fn b_first(index: usize) -> bool {
    index % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: f64, b: f64) -> Pair {
        Pair {
            a,
            b,
            a_steal: None,
            b_steal: None,
        }
    }

    #[test]
    fn the_median_of_the_ratios_ignores_a_pair_the_machine_spoiled() {
        let s = summarize(&[pair(100.0, 110.0), pair(50.0, 56.0), pair(100.0, 30.0)]);
        assert_eq!(s.ratios, vec![0.3, 1.1, 1.12]);
        assert_eq!(s.median, Some(1.1));
        assert_eq!(s.b_ahead, 2);
        let even = summarize(&[pair(10.0, 9.0), pair(10.0, 11.0)]);
        assert!((even.median.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(summarize(&[pair(0.0, 5.0)]).median, None);
    }

    #[test]
    fn the_order_alternates() {
        let order: Vec<bool> = (0..4).map(b_first).collect();
        assert_eq!(order, vec![false, true, false, true]);
    }
}
