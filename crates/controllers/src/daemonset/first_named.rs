//! The first few nodes by name out of many, and how many there were in all: what a condition's
//! message names ("node-1, node-2, node-3 and 6 more"). A DaemonSet being created has every
//! node in one group, and keeping 10,000 names would cost more than the pass, so only the
//! first `limit` by name are kept, in one comparison for each node past them.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstNamed<T> {
    limit: usize,
    count: usize,
    /// At most `limit`, sorted by name.
    first: Vec<(String, T)>,
}

impl<T> FirstNamed<T> {
    pub fn new(limit: usize) -> Self {
        FirstNamed {
            limit,
            count: 0,
            first: Vec::new(),
        }
    }

    /// Counts `node`, keeping it (and what `what` says of it) if it is among the first by name.
    pub fn add(&mut self, node: &str, what: impl FnOnce() -> T) {
        self.count += 1;
        if self.first.len() >= self.limit
            && self
                .first
                .last()
                .is_some_and(|(last, _)| last.as_str() < node)
        {
            return;
        }
        let at = self.first.partition_point(|(n, _)| n.as_str() < node);
        self.first.insert(at, (node.to_owned(), what()));
        self.first.truncate(self.limit);
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn first(&self) -> &[(String, T)] {
        &self.first
    }

    pub fn into_first(self) -> Vec<(String, T)> {
        self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_by_name_whatever_the_order_and_counts_all() {
        let mut f = FirstNamed::new(3);
        for n in ["node-5", "node-2", "node-9", "node-1", "node-3"] {
            f.add(n, || n.len());
        }
        assert_eq!(f.count(), 5);
        let names: Vec<&str> = f.first().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["node-1", "node-2", "node-3"]);
    }
}
