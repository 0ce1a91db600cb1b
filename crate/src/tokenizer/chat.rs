//! Chat prompts: the two templates the project's models use, rendered as their
//! Jinja templates do (checked against jinja2 in crate/tests/tokenizer.rs).
//! BOS is not part of the rendered text: `encode(.., add_special = true, ..)` adds it.

use crate::error::{Error, Result};
use crate::gguf::Metadata;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message { role: role.into(), content: content.into() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` per message. `default_system`
    /// is the system turn the template inserts when the first message is not one.
    ChatMl { default_system: Option<String> },
    /// Gemma's `<start_of_turn>{user|model}\n{content}<end_of_turn>\n` turns; a
    /// leading system message joins the first user turn.
    Gemma,
}

const IM_SYSTEM: &str = "<|im_start|>system\n";

impl ChatTemplate {
    /// The template `tokenizer.chat_template` describes; Gemma's when a `gemma*`
    /// model has none (Gemma GGUFs often omit it).
    pub fn from_metadata(meta: &Metadata) -> Result<ChatTemplate> {
        let template = match meta.get_str("tokenizer.chat_template") {
            Ok(t) => Some(t),
            Err(Error::MissingKey(_)) => None,
            Err(e) => return Err(e),
        };
        let arch = meta.get_str("general.architecture").unwrap_or_default();
        match template {
            Some(t) if t.contains("<|im_start|>") => {
                Ok(ChatTemplate::ChatMl { default_system: chatml_default_system(t) })
            }
            Some(t) if t.contains("<start_of_turn>") => Ok(ChatTemplate::Gemma),
            None if arch.starts_with("gemma") => Ok(ChatTemplate::Gemma),
            Some(_) => Err(Error::Tokenizer("unsupported chat template".into())),
            None => Err(Error::Tokenizer(format!("no chat template for architecture '{arch}'"))),
        }
    }

    /// The prompt text for `messages`; `add_generation_prompt` opens the assistant's turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut out = String::new();
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if let (Some(first), Some(system)) = (messages.first(), default_system) {
                    if first.role != "system" {
                        out += &format!("{IM_SYSTEM}{system}<|im_end|>\n");
                    }
                }
                for m in messages {
                    out += &format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content);
                }
                if add_generation_prompt {
                    out += "<|im_start|>assistant\n";
                }
            }
            ChatTemplate::Gemma => {
                let (prefix, turns) = match messages.split_first() {
                    Some((first, rest)) if first.role == "system" => (format!("{}\n\n", first.content), rest),
                    Some(_) => (String::new(), messages),
                    None => return Err(Error::InvalidArgument("empty conversation".into())),
                };
                for (i, m) in turns.iter().enumerate() {
                    if (m.role == "user") != (i % 2 == 0) {
                        return Err(Error::InvalidArgument(
                            "conversation roles must alternate user/assistant/user/assistant/...".into(),
                        ));
                    }
                    let role = if m.role == "assistant" { "model" } else { &m.role };
                    let prefix = if i == 0 { prefix.as_str() } else { "" };
                    out += &format!("<start_of_turn>{role}\n{prefix}{}<end_of_turn>\n", jinja_trim(&m.content));
                }
                if add_generation_prompt {
                    out += "<start_of_turn>model\n";
                }
            }
        }
        Ok(out)
    }
}

/// The literal system prompt of a ChatML template's `<|im_start|>system\n...<|im_end|>`
/// string, if it has one (a templated one, with quotes or braces, is not a default).
fn chatml_default_system(template: &str) -> Option<String> {
    let rest = &template[template.find(IM_SYSTEM)? + IM_SYSTEM.len()..];
    let text = &rest[..rest.find("<|im_end|>")?];
    (!text.contains(['\'', '"', '{', '}'])).then(|| text.to_string())
}

/// Jinja's `trim`: Python's `str.strip()`, whose whitespace also includes
/// U+001C..U+001F, which Rust's `char::is_whitespace` does not.
fn jinja_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}
