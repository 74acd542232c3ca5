//! The part of the Prometheus text format kandle-runtime writes: `name{label="value",...} number`
//! lines and `#` comments. Only the families the operator reads are kept.

use super::PodMetrics;

/// A line that is not a sample of the text format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// Reads the runtime's metrics from the text of its `/metrics`. The answer must hold
/// `kandle_requests_in_flight`, or it is not a kandle runtime.
pub fn parse(text: &str) -> Result<PodMetrics, ParseError> {
    let mut metrics = PodMetrics::default();
    let mut saw_runtime = false;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |problem: &str| ParseError {
            line: index + 1,
            problem: problem.to_string(),
        };
        let (name, labels, value) = sample(line).map_err(|p| fail(&p))?;
        match name {
            "kandle_requests_in_flight" => {
                saw_runtime = true;
                metrics.in_flight = value;
            }
            "kandle_queue_depth" => metrics.queue_depth = value,
            "kandle_requests_total" => {
                let code = label(&labels, "code").unwrap_or("unknown").to_string();
                *metrics.requests_by_code.entry(code).or_default() += value;
            }
            "kandle_request_duration_seconds_bucket" => {
                let le = label(&labels, "le").ok_or_else(|| fail("a bucket without `le`"))?;
                let bound = number(le).map_err(|p| fail(&p))?;
                match metrics
                    .latency_buckets
                    .iter_mut()
                    .find(|(b, _)| *b == bound)
                {
                    Some((_, count)) => *count += value,
                    None => metrics.latency_buckets.push((bound, value)),
                }
            }
            _ => {}
        }
    }
    if !saw_runtime {
        return Err(ParseError {
            line: 0,
            problem: "no kandle_requests_in_flight: not a kandle-runtime".to_string(),
        });
    }
    metrics.latency_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(metrics)
}

fn label<'a>(labels: &'a [(&'a str, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

type Labels<'a> = Vec<(&'a str, String)>;

/// Splits one sample line into its name, labels and value (a timestamp after it is ignored).
fn sample(line: &str) -> Result<(&str, Labels<'_>, f64), String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample without a value")?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("a label without `=`")?;
            let label_name = rest[..eq].trim();
            let (value, after) = quoted(&rest[eq + 1..])?;
            labels.push((label_name, value));
            rest = after;
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or("a sample without a value")?;
    Ok((name, labels, number(value)?))
}

/// A quoted label value with its escapes, and what follows it.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let body = text
        .trim_start()
        .strip_prefix('"')
        .ok_or("a label value without quotes")?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, other)) => value.push(other),
                None => break,
            },
            other => value.push(other),
        }
    }
    Err("an unterminated label value".to_string())
}

fn number(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse()
            .map_err(|_| format!("`{text}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNTIME: &str = r#"# HELP kandle_requests API requests answered, by route and HTTP status code.
# TYPE kandle_requests counter
kandle_requests_total{route="/v1/embeddings",code="200"} 40
kandle_requests_total{route="/v2/models/m/infer",code="200"} 2
kandle_requests_total{route="/v1/embeddings",code="504"} 3
# TYPE kandle_request_duration_seconds histogram
kandle_request_duration_seconds_sum{route="/v1/embeddings"} 1.5
kandle_request_duration_seconds_count{route="/v1/embeddings"} 43
kandle_request_duration_seconds_bucket{le="0.01",route="/v1/embeddings"} 10
kandle_request_duration_seconds_bucket{le="+Inf",route="/v1/embeddings"} 43
kandle_request_duration_seconds_bucket{le="0.01",route="/v2/models/m/infer"} 1
kandle_request_duration_seconds_bucket{le="+Inf",route="/v2/models/m/infer"} 2
kandle_queue_depth 5
kandle_requests_in_flight 7
kandle_model_info{model="a \"quoted\" name",task="embedding"} 1
# EOF
"#;

    #[test]
    fn reads_the_runtime_families_summed_over_routes() {
        let m = parse(RUNTIME).unwrap();
        assert_eq!(m.in_flight, 7.0);
        assert_eq!(m.queue_depth, 5.0);
        assert_eq!(m.requests(), 45.0);
        assert_eq!(m.requests_by_code["504"], 3.0);
        assert_eq!(m.latency_buckets, vec![(0.01, 11.0), (f64::INFINITY, 45.0)]);
    }

    #[test]
    fn something_else_is_refused_with_the_line() {
        assert!(parse("up 1\n")
            .unwrap_err()
            .problem
            .contains("not a kandle-runtime"));
        let err = parse("kandle_requests_in_flight seven\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.problem.contains("`seven` is not a number"));
        let err = parse("kandle_requests_total{code=\"200} 1\n").unwrap_err();
        assert!(err.problem.contains("unterminated"));
    }
}
