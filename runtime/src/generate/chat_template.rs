//! Chat templates: a model's Jinja template that turns a conversation into its prompt text.
//!
//! Templates are Hugging Face's (`tokenizer.chat_template` in a GGUF file, `chat_template` in
//! `tokenizer_config.json` or a `chat_template.jinja` file) and render here with minijinja in the
//! environment transformers gives them: `trim_blocks` and `lstrip_blocks` on, Python string
//! methods, `raise_exception`, `strftime_now` and a `tojson` that writes what Python's
//! `json.dumps` writes.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use candle_core::quantized::gguf_file::{Content, Value as GgufValue};
use minijinja::value::{Enumerator, Kwargs, Object, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind, Output, State, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::tokenizer::SpecialTokens;

const TEMPLATE_NAME: &str = "chat_template";
const GGUF_KEY: &str = "tokenizer.chat_template";

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Templates see a message as a mapping with `role` then `content`, in that order (as Python's
/// dicts keep it, which `tojson` shows).
impl Object for ChatMessage {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(Value::from(self.role.as_str())),
            "content" => Some(Value::from(self.content.as_str())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    /// The model ships no chat template (a request error: only raw completions work).
    #[error("this model has no chat template; use /v1/completions")]
    Missing,
    /// The template does not compile.
    #[error("invalid chat template: {0}")]
    Invalid(String),
    /// The template refused the conversation with `raise_exception(message)`.
    #[error("{0}")]
    Rejected(String),
    /// Rendering failed for another reason.
    #[error("cannot render the chat template: {0}")]
    Render(String),
}

/// The message a template passed to `raise_exception`, carried as the source of the render error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Raised(String);

/// A compiled chat template with the special tokens it may print.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.set_formatter(python_formatter);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|err| ChatTemplateError::Invalid(err.to_string()))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The template of a GGUF file (`tokenizer.chat_template`), or `None` when it has none.
    pub fn from_gguf(content: &Content, special: &SpecialTokens) -> anyhow::Result<Option<Self>> {
        let source = match content.metadata.get(GGUF_KEY) {
            None => return Ok(None),
            Some(GgufValue::String(source)) => source,
            Some(other) => bail!(
                "GGUF metadata `{GGUF_KEY}` is {:?}, not a string",
                other.value_type()
            ),
        };
        Self::with_special(source, special)
            .map(Some)
            .with_context(|| format!("GGUF metadata `{GGUF_KEY}`"))
    }

    /// The template of a model folder: `chat_template.jinja`, else `chat_template` in
    /// `tokenizer_config.json` (a string, or a list of `{name, template}` where "default" is
    /// taken); `None` when neither has one.
    pub fn from_folder(dir: &Path, special: &SpecialTokens) -> anyhow::Result<Option<Self>> {
        let Some((source, origin)) = folder_source(dir)? else {
            return Ok(None);
        };
        Self::with_special(&source, special)
            .map(Some)
            .with_context(|| origin.display().to_string())
    }

    fn with_special(source: &str, special: &SpecialTokens) -> anyhow::Result<Self> {
        let bos = special.bos_text.as_deref().unwrap_or_default();
        let eos = special.eos_text.as_deref().unwrap_or_default();
        Ok(Self::new(source, bos, eos)?)
    }

    /// The prompt for `messages`, ending with the assistant's turn opening when
    /// `add_generation_prompt` is set.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let messages: Vec<Value> = messages.iter().cloned().map(Value::from_object).collect();
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|err| ChatTemplateError::Invalid(err.to_string()))?;
        template
            .render(context! {
                messages,
                add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
                // transformers passes these as None when a request has neither.
                tools => Value::from(()),
                documents => Value::from(()),
            })
            .map_err(render_error)
    }
}

fn folder_source(dir: &Path) -> anyhow::Result<Option<(String, std::path::PathBuf)>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let source = std::fs::read_to_string(&jinja)
            .with_context(|| format!("cannot read {}", jinja.display()))?;
        return Ok(Some((source, jinja)));
    }
    let config_path = dir.join("tokenizer_config.json");
    let text = match std::fs::read_to_string(&config_path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", config_path.display()))
        }
    };
    let config: Json = serde_json::from_str(&text)
        .with_context(|| format!("cannot parse {}", config_path.display()))?;
    let source = config_template(&config).with_context(|| config_path.display().to_string())?;
    Ok(source.map(|source| (source, config_path)))
}

fn config_template(config: &Json) -> anyhow::Result<Option<String>> {
    match config.get("chat_template") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(source)) => Ok(Some(source.clone())),
        Some(Json::Array(named)) => {
            let default = named
                .iter()
                .find(|entry| entry.get("name").and_then(Json::as_str) == Some("default"));
            let source = default
                .and_then(|entry| entry.get("template"))
                .and_then(Json::as_str)
                .ok_or_else(|| {
                    anyhow!("`chat_template` lists templates but none named \"default\"")
                })?;
            Ok(Some(source.to_owned()))
        }
        Some(other) => bail!("`chat_template` is neither a string nor a list: {other}"),
    }
}

fn render_error(err: Error) -> ChatTemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(current) = source {
        if let Some(Raised(message)) = current.downcast_ref::<Raised>() {
            return ChatTemplateError::Rejected(message.clone());
        }
        source = current.source();
    }
    ChatTemplateError::Render(err.to_string())
}

/// Prints booleans and none as Python does (`True`, `None`); everything else as minijinja does.
fn python_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    let python = match value.kind() {
        ValueKind::Bool if value.is_true() => "True",
        ValueKind::Bool => "False",
        ValueKind::None => "None",
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(python).map_err(Error::from)
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=None, separators=None)`, the filter
/// transformers installs (Jinja's own escapes HTML and writes no spaces).
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let separators = match separators.as_deref() {
        None => None,
        Some([item, key]) => Some((item.clone(), key.clone())),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be two strings",
            ))
        }
    };
    let indent = match indent {
        None => None,
        Some(indent) if indent.is_none() => None,
        Some(indent) => match indent.as_str() {
            Some(text) => Some(text.to_owned()),
            None => {
                Some(" ".repeat(usize::try_from(indent.clone()).map_err(|_| bad_indent(&indent))?))
            }
        },
    };
    let (item, key) = separators.unwrap_or_else(|| match indent {
        None => (", ".into(), ": ".into()),
        Some(_) => (",".into(), ": ".into()),
    });
    let formatter = PyJson {
        item,
        key,
        indent,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        level: 0,
        has_value: false,
    };
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer).map_err(|err| {
        Error::new(
            ErrorKind::InvalidOperation,
            "tojson cannot serialize the value",
        )
        .with_source(err)
    })?;
    let text = String::from_utf8(out)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "tojson wrote invalid UTF-8"))?;
    Ok(Value::from(text))
}

fn bad_indent(indent: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("tojson: indent must be a count or a string, not {indent}"),
    )
}

/// A `serde_json` formatter laying JSON out as Python's `json.dumps` does.
struct PyJson {
    item: String,
    key: String,
    indent: Option<String>,
    ensure_ascii: bool,
    level: usize,
    has_value: bool,
}

impl PyJson {
    fn newline<W: ?Sized + std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        match &self.indent {
            Some(indent) => write!(writer, "\n{}", indent.repeat(self.level)),
            None => Ok(()),
        }
    }

    fn open<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        writer.write_all(bracket)
    }

    fn close<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(writer)?;
        }
        writer.write_all(bracket)
    }

    fn element<W: ?Sized + std::io::Write>(
        &self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            writer.write_all(self.item.as_bytes())?;
        }
        self.newline(writer)
    }
}

impl serde_json::ser::Formatter for PyJson {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.close(writer, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.element(writer, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        _writer: &mut W,
    ) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.close(writer, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.element(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(self.key.as_bytes())
    }

    fn end_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        _writer: &mut W,
    ) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if !self.ensure_ascii {
            return writer.write_all(fragment.as_bytes());
        }
        for c in fragment.chars() {
            if c.is_ascii() {
                write!(writer, "{c}")?;
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Python's `datetime.now().strftime(format)`, in UTC.
fn strftime_now(format: &str) -> Result<String, Error> {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    strftime(format, seconds)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The directives chat templates use (`%d %b %Y`, `%B %-d, %Y`, ...); `-` drops the padding as
/// glibc does.
fn strftime(format: &str, unix_seconds: u64) -> Result<String, Error> {
    let date = Date::from_unix(unix_seconds);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut directive = chars.next();
        let pad = directive != Some('-');
        if !pad {
            directive = chars.next();
        }
        let number = |value: u64, width: usize| match pad {
            true => format!("{value:0width$}"),
            false => value.to_string(),
        };
        let text = match directive {
            Some('Y') => date.year.to_string(),
            Some('y') => number(date.year % 100, 2),
            Some('m') => number(date.month, 2),
            Some('d') => number(date.day, 2),
            Some('j') => number(date.year_day, 3),
            Some('H') => number(date.hour, 2),
            Some('I') => number((date.hour + 11) % 12 + 1, 2),
            Some('M') => number(date.minute, 2),
            Some('S') => number(date.second, 2),
            Some('p') => (if date.hour < 12 { "AM" } else { "PM" }).to_owned(),
            Some('B') => MONTHS[date.month as usize - 1].to_owned(),
            Some('b') => MONTHS[date.month as usize - 1][..3].to_owned(),
            Some('A') => WEEKDAYS[date.weekday].to_owned(),
            Some('a') => WEEKDAYS[date.weekday][..3].to_owned(),
            Some('%') => "%".to_owned(),
            other => {
                let shown = other.map(String::from).unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive %{shown}"),
                ));
            }
        };
        out.push_str(&text);
    }
    Ok(out)
}

/// A UTC calendar date and time.
struct Date {
    year: u64,
    month: u64,
    day: u64,
    year_day: u64,
    weekday: usize,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Date {
    /// The civil-from-days conversion of Howard Hinnant's date algorithms.
    fn from_unix(seconds: u64) -> Self {
        let days = seconds / 86_400;
        let of_day = seconds % 86_400;
        let shifted = days + 719_468;
        let era = shifted / 146_097;
        let day_of_era = shifted % 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_index + 2) / 5 + 1;
        let month = if month_index < 10 {
            month_index + 3
        } else {
            month_index - 9
        };
        let year = year_of_era + era * 400 + u64::from(month <= 2);
        let leap =
            year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let before_month =
            [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][month as usize - 1];
        Self {
            year,
            month,
            day,
            year_day: before_month + day + u64::from(leap && month > 2),
            weekday: ((days + 4) % 7) as usize,
            hour: of_day / 3600,
            minute: of_day % 3600 / 60,
            second: of_day % 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn message(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.to_owned(),
            content: content.to_owned(),
        }
    }

    fn render(source: &str, messages: &[ChatMessage]) -> Result<String, ChatTemplateError> {
        ChatTemplate::new(source, "<s>", "</s>")?.render(messages, true)
    }

    #[test]
    fn smollm2_template_adds_its_system_prompt() {
        let template = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").expect("compile");
        let rendered = template
            .render(&[message("user", "Hi")], true)
            .expect("render");
        assert_eq!(
            rendered,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let without = template
            .render(&[message("system", "S")], false)
            .expect("render");
        assert_eq!(without, "<|im_start|>system\nS<|im_end|>\n");
    }

    #[test]
    fn raise_exception_message_is_the_error() {
        let source = "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}\
                      {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\
                      {% endif %}{{ m['content'] }}{% endfor %}";
        let err = render(source, &[message("user", "a"), message("user", "b")]).unwrap_err();
        assert!(matches!(err, ChatTemplateError::Rejected(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "Conversation roles must alternate user/assistant/user/assistant/..."
        );
    }

    #[test]
    fn syntax_and_render_errors_say_what_is_wrong() {
        let err = ChatTemplate::new("{% for m in messages %}", "", "").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid chat template: "),
            "{err}"
        );
        assert!(err.to_string().contains("unexpected end of input"), "{err}");

        let err = render("{{ messages[0].content.nope() }}", &[message("user", "a")]).unwrap_err();
        assert!(matches!(err, ChatTemplateError::Render(_)), "{err:?}");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn missing_template_asks_for_completions() {
        let err = ChatTemplateError::Missing;
        assert_eq!(
            err.to_string(),
            "this model has no chat template; use /v1/completions"
        );
    }

    #[test]
    fn trims_blocks_like_transformers() {
        let source = "{% for m in messages %}\n  {% if m.role == 'user' %}\nU: {{ m.content }}\n  {% endif %}\n{% endfor %}\n";
        assert_eq!(
            render(source, &[message("user", "x")]).expect("render"),
            "U: x\n"
        );
    }

    #[test]
    fn python_string_methods_and_special_tokens() {
        let source = "{{ bos_token }}{{ messages[0].content.strip().upper() }}{{ eos_token }}{% if tools is none %}!{% endif %}";
        assert_eq!(
            render(source, &[message("user", "  hi ")]).expect("render"),
            "<s>HI</s>!"
        );
    }

    #[test]
    fn tojson_writes_what_python_writes() {
        let messages = [message("user", "<é> \"q\"")];
        let compact = render("{{ messages | tojson }}", &messages).expect("render");
        assert_eq!(compact, r#"[{"role": "user", "content": "<é> \"q\""}]"#);
        let indented = render(
            "{{ messages[0] | tojson(indent=2) }}|{{ [] | tojson(indent=2) }}",
            &messages,
        )
        .expect("render");
        assert_eq!(
            indented,
            "{\n  \"role\": \"user\",\n  \"content\": \"<é> \\\"q\\\"\"\n}|[]"
        );
        let ascii = render("{{ 'é😀' | tojson(ensure_ascii=true) }}", &messages).expect("render");
        assert_eq!(ascii, r#""\u00e9\ud83d\ude00""#);
    }

    #[test]
    fn strftime_formats_like_python() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let at = 1_709_211_909;
        assert_eq!(strftime("%d %b %Y", at).expect("format"), "29 Feb 2024");
        assert_eq!(
            strftime("%A %B %-d, %y %H:%M:%S %I%p %j %%", at).expect("format"),
            "Thursday February 29, 24 13:05:09 01PM 060 %"
        );
        assert!(strftime("%Q", at).unwrap_err().to_string().contains("%Q"));
        assert_eq!(strftime("%Y-%m-%d", 0).expect("format"), "1970-01-01");
    }

    #[test]
    fn folder_template_takes_the_default_of_a_list() {
        let listed = serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D"},
        ]});
        assert_eq!(
            config_template(&listed).expect("read").as_deref(),
            Some("D")
        );
        let none = serde_json::json!({"chat_template": [{"name": "rag", "template": "R"}]});
        assert!(config_template(&none)
            .unwrap_err()
            .to_string()
            .contains("default"));
        assert_eq!(config_template(&serde_json::json!({})).expect("read"), None);
    }

    #[test]
    fn folder_template_prefers_chat_template_jinja() {
        let dir = std::env::temp_dir().join(format!("kandle-chat-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let special = SpecialTokens {
            bos_text: Some("<s>".into()),
            ..SpecialTokens::default()
        };
        let load = || {
            ChatTemplate::from_folder(&dir, &special)
                .expect("load")
                .map(|t| t.render(&[], false).expect("render"))
        };
        assert_eq!(load(), None);
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"chat_template": "{{ bos_token }}config"}"#,
        )
        .expect("write");
        assert_eq!(load().as_deref(), Some("<s>config"));
        std::fs::write(dir.join("chat_template.jinja"), "{{ bos_token }}jinja\n").expect("write");
        assert_eq!(load().as_deref(), Some("<s>jinja"));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn gguf_template_of_smollm2() {
        let Some(content) = super::super::tokenizer::tests::smollm2_gguf() else {
            return;
        };
        let special = SpecialTokens::from_gguf(&content).expect("special tokens");
        let template = ChatTemplate::from_gguf(&content, &special)
            .expect("compile")
            .expect("a template");
        let rendered = template
            .render(&[message("system", "S"), message("user", "U")], true)
            .expect("render");
        assert_eq!(rendered, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    }
}
