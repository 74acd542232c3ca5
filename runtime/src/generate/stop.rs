//! Stop strings: the generated text is released as it comes, except a tail that could still
//! become a stop string; when one appears, the text ends just before it.

/// Text generated so far for one request, and how much of it was released.
#[derive(Debug, Default)]
pub struct StopText {
    stops: Vec<String>,
    text: String,
    released: usize,
}

/// What [`StopText::push`] lets through.
#[derive(Debug, PartialEq, Eq)]
pub enum Release {
    /// Text that can be sent now (possibly empty).
    Text(String),
    /// A stop string appeared: send this text, then finish.
    Stopped(String),
}

impl StopText {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Self::default()
        }
    }

    pub fn push(&mut self, piece: &str) -> Release {
        // A stop may start in text already held back, never in text already released.
        let search_from = self.released;
        self.text.push_str(piece);
        let found = self
            .stops
            .iter()
            .filter_map(|stop| self.text[search_from..].find(stop.as_str()))
            .min();
        if let Some(at) = found {
            let end = search_from + at;
            let out = self.text[self.released..end].to_owned();
            self.released = end;
            return Release::Stopped(out);
        }
        let end = self.text.len() - self.held_back();
        let out = self.text[self.released..end].to_owned();
        self.released = end;
        Release::Text(out)
    }

    /// Releases what was held back (the generation ended for another reason).
    pub fn finish(&mut self) -> String {
        let out = self.text[self.released..].to_owned();
        self.released = self.text.len();
        out
    }

    /// Bytes at the end of the unreleased text that begin some stop string.
    fn held_back(&self) -> usize {
        let pending = &self.text[self.released..];
        let mut longest = 0;
        for stop in &self.stops {
            for (at, _) in pending.char_indices() {
                let tail = &pending[at..];
                if tail.len() > longest && stop.starts_with(tail) {
                    longest = tail.len();
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_stops_passes_at_once() {
        let mut stop = StopText::new(vec![]);
        assert_eq!(stop.push("Hello"), Release::Text("Hello".into()));
    }

    #[test]
    fn a_stop_split_across_pieces_is_caught_and_cut() {
        let mut stop = StopText::new(vec!["\n\nUser:".into()]);
        assert_eq!(stop.push("Sure.\n"), Release::Text("Sure.".into()));
        assert_eq!(stop.push("\nUs"), Release::Text(String::new()));
        assert_eq!(stop.push("er: hi"), Release::Stopped(String::new()));
    }

    #[test]
    fn a_false_start_is_released_once_it_diverges() {
        let mut stop = StopText::new(vec!["END".into()]);
        assert_eq!(stop.push("the EN"), Release::Text("the ".into()));
        assert_eq!(stop.push("D? no, ENTER"), Release::Stopped(String::new()));
        let mut stop = StopText::new(vec!["END".into()]);
        assert_eq!(stop.push("EN"), Release::Text(String::new()));
        assert_eq!(stop.push("TER"), Release::Text("ENTER".into()));
    }

    #[test]
    fn the_earliest_of_several_stops_wins_and_unicode_is_kept_whole() {
        let mut stop = StopText::new(vec!["。".into(), "!".into()]);
        assert_eq!(stop.push("你好!世界。"), Release::Stopped("你好".into()));
        let mut stop = StopText::new(vec!["xyz".into()]);
        assert_eq!(stop.push("héllo x"), Release::Text("héllo ".into()));
        assert_eq!(stop.finish(), "x");
    }
}
