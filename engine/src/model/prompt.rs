//! Prompts: Co-Instruct's chat template, the questions asked of a group, and tokenisation with
//! image placeholders.
//!
//! Reference: Q-Future/Q-Align `q_align/mm_utils.py` (`tokenizer_image_token`) and
//! `conversation.py` (`conv_mplug_owl2`: `USER: … ASSISTANT:`, no system prompt, turns closed by
//! `</s>`), and the Co-Instruct model card ("The first image: <|image|>\nThe second image: …").
//!
//! The text is split at each `<|image|>` and every chunk is tokenised on its own, with the
//! tokenizer's BOS stripped from each and one BOS put in front, exactly as
//! `tokenizer_image_token` does; an image then takes the place of the `-200` id.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::error::ModelError;
use crate::compare::Criterion;

/// Where an image stands in a prompt, in the text form.
pub(crate) const IMAGE_PLACEHOLDER: &str = "<|image|>";
/// Where an image stands in a prompt, in the id form (`IMAGE_TOKEN_INDEX` of the reference).
pub(crate) const IMAGE_TOKEN_INDEX: i64 = -200;
/// Option letters: one per image of a group.
pub(crate) const LETTERS: [&str; 4] = ["A", "B", "C", "D"];
const ORDINALS: [&str; 4] = ["first", "second", "third", "fourth"];

/// A stretch of prompt: token ids, or the next image's 65 tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(Vec<u32>),
    Image,
}

/// Reads the id form of a prompt (`-200` for each image) into pieces.
pub(crate) fn pieces_from_ids(ids: &[i64]) -> Result<Vec<Piece>, ModelError> {
    let mut pieces = Vec::new();
    let mut text = Vec::new();
    for &id in ids {
        if id == IMAGE_TOKEN_INDEX {
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Image);
        } else {
            text.push(u32::try_from(id).map_err(|_| ModelError::Prompt(format!("token id {id} is negative")))?);
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The user turn of the chat template, ending where the assistant's answer starts.
pub(crate) fn chat_turn(user: &str) -> String {
    format!("USER: {user} ASSISTANT:")
}

/// "The first image: <|image|>\nThe second image: <|image|>…" for `n` images, with no newline
/// after the last (the question follows directly, as on the model card).
pub(crate) fn image_intro(n: usize) -> String {
    ORDINALS[..n]
        .iter()
        .map(|o| format!("The {o} image: {IMAGE_PLACEHOLDER}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The question for a criterion over `n` images, without options.
fn criterion_question(criterion: &Criterion, n: usize) -> String {
    let most = |adj: &str| {
        if n == 2 {
            format!("Which image has better {adj}?")
        } else {
            format!("Which image has the best {adj}?")
        }
    };
    match criterion {
        Criterion::Overall => most("overall quality"),
        Criterion::Sharpness => most("sharpness and detail"),
        Criterion::Noise => {
            if n == 2 {
                "Which image has less noise?".into()
            } else {
                "Which image has the least noise?".into()
            }
        }
        Criterion::Exposure => most("exposure"),
        Criterion::Colour => most("colour rendition"),
        Criterion::Custom(q) => q.trim().to_string(),
    }
}

/// A multiple-choice question whose options are letters naming `slots` (0-based image positions):
/// option `LETTERS[i]` is `slots[i]`. `follow_up` phrases it for a later stage, once the earlier
/// winners are out.
pub(crate) fn choice_question(criterion: &Criterion, slots: &[usize], follow_up: bool) -> String {
    let mut q = String::new();
    if follow_up {
        q.push_str("Of the remaining images: ");
    }
    q.push_str(&criterion_question(criterion, slots.len()));
    for (letter, &slot) in LETTERS.iter().zip(slots) {
        q.push_str(&format!("\n{letter}. The {} image", ORDINALS[slot]));
    }
    q.push_str("\nAnswer with the option's letter from the given choices directly.");
    q
}

/// The tokenizer with the ids the prompts need.
#[derive(Debug, Clone)]
pub(crate) struct PromptTokenizer {
    tokenizer: Tokenizer,
    path: PathBuf,
    bos: u32,
    pub(crate) eos: u32,
    /// Token of each option letter as the assistant's first word (`▁A` in LLaMA's vocabulary).
    pub(crate) letters: [u32; 4],
}

impl PromptTokenizer {
    pub(crate) fn new(tokenizer: Tokenizer, path: &Path, bos: u32, eos: u32) -> Result<Self, ModelError> {
        let mut this = Self {
            tokenizer,
            path: path.to_path_buf(),
            bos,
            eos,
            letters: [0; 4],
        };
        for (slot, letter) in LETTERS.iter().enumerate() {
            this.letters[slot] = match this.encode(letter, false)?.as_slice() {
                [id] => *id,
                ids => return Err(this.error(format!("option letter {letter:?} is {} tokens, not one", ids.len()))),
            };
        }
        Ok(this)
    }

    fn error(&self, reason: String) -> ModelError {
        ModelError::Tokenizer {
            path: self.path.clone(),
            reason,
        }
    }

    fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, ModelError> {
        let enc = self
            .tokenizer
            .encode(text, special)
            .map_err(|e| self.error(format!("encoding {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// A full prompt with images, as `tokenizer_image_token` tokenises it.
    pub(crate) fn prompt(&self, text: &str) -> Result<Vec<Piece>, ModelError> {
        let chunks = text
            .split(IMAGE_PLACEHOLDER)
            .map(|c| self.encode(c, true))
            .collect::<Result<Vec<_>, _>>()?;
        // Like the reference: strip a leading BOS from every chunk only if the first chunk has one.
        let strip = usize::from(chunks.first().and_then(|c| c.first()) == Some(&self.bos));
        let mut pieces = Vec::new();
        if strip == 1 {
            pieces.push(Piece::Text(vec![self.bos]));
        }
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0 {
                pieces.push(Piece::Image);
            }
            let ids = chunk.get(strip.min(chunk.len())..).unwrap_or_default().to_vec();
            if !ids.is_empty() {
                pieces.push(Piece::Text(ids));
            }
        }
        Ok(pieces)
    }

    /// Text that continues a conversation (no BOS, no images).
    pub(crate) fn continuation(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.encode(text, false)
    }

    /// Text of generated ids, special tokens dropped.
    pub(crate) fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| self.error(format!("decoding: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_at_each_image() {
        let pieces = pieces_from_ids(&[1, 5, -200, 6, 7, -200, -200]).unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Text(vec![1, 5]),
                Piece::Image,
                Piece::Text(vec![6, 7]),
                Piece::Image,
                Piece::Image
            ]
        );
        assert!(pieces_from_ids(&[1, -3]).is_err());
    }

    #[test]
    fn group_prompt_reads_like_the_model_card() {
        let text = chat_turn(&format!(
            "{}{}",
            image_intro(2),
            choice_question(&Criterion::Overall, &[0, 1], false)
        ));
        assert_eq!(
            text,
            "USER: The first image: <|image|>\nThe second image: <|image|>Which image has better overall quality?\n\
             A. The first image\nB. The second image\nAnswer with the option's letter from the given choices directly. ASSISTANT:"
        );
    }

    #[test]
    fn follow_up_options_name_the_remaining_images() {
        let q = choice_question(&Criterion::Noise, &[0, 2, 3], true);
        assert!(q.starts_with("Of the remaining images: Which image has the least noise?"));
        assert!(q.contains("\nA. The first image\nB. The third image\nC. The fourth image\n"));
    }
}
