//! Reads a SentencePiece `tokenizer.model` (LLaMA's BPE with byte fallback) into a `tokenizers`
//! tokenizer, for checkpoints that ship no `tokenizer.json`.
//!
//! The result is what transformers' `LlamaConverter` builds (legacy mode): the pieces as a BPE
//! vocabulary, merges derived from the pieces and ordered by piece score (transformers'
//! `SentencePieceExtractor`), a normaliser that prepends `▁` and turns spaces into `▁`, BOS
//! prepended, and the matching decoder. Only the protobuf fields this needs are read.

use serde_json::{json, Value};
use tokenizers::Tokenizer;

/// Piece types of `sentencepiece_model.proto`.
const UNKNOWN: u64 = 2;
const CONTROL: u64 = 3;

#[derive(Debug)]
struct Piece {
    text: String,
    score: f32,
    kind: u64,
}

/// A protobuf reader for the wire types SentencePiece uses.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let out = self.buf.get(self.pos..self.pos + n).ok_or("truncated field")?;
        self.pos += n;
        Ok(out)
    }

    /// Next `(field, wire type, payload)`; varints come back as their value in `payload` bytes.
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed(self.bytes(8)?),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Field::Bytes(self.bytes(n)?)
            }
            5 => Field::Fixed(self.bytes(4)?),
            t => return Err(format!("unsupported wire type {t}")),
        };
        Ok(Some((key >> 3, field)))
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed(&'a [u8]),
    Bytes(&'a [u8]),
}

fn parse_piece(buf: &[u8]) -> Result<Piece, String> {
    let mut piece = Piece {
        text: String::new(),
        score: 0.0,
        kind: 1,
    };
    let mut r = Reader { buf, pos: 0 };
    while let Some((number, field)) = r.field()? {
        match (number, field) {
            (1, Field::Bytes(b)) => piece.text = String::from_utf8(b.to_vec()).map_err(|e| e.to_string())?,
            (2, Field::Fixed(b)) if b.len() == 4 => piece.score = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (3, Field::Varint(v)) => piece.kind = v,
            _ => {}
        }
    }
    Ok(piece)
}

fn parse_pieces(model: &[u8]) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut r = Reader { buf: model, pos: 0 };
    while let Some((number, field)) = r.field()? {
        if let (1, Field::Bytes(b)) = (number, field) {
            pieces.push(parse_piece(b)?);
        }
    }
    if pieces.is_empty() {
        return Err("no pieces: not a SentencePiece model".into());
    }
    Ok(pieces)
}

/// Merges `(left, right)` for every piece that splits into two pieces, highest score first,
/// ties in the order of the pieces' ids (a stable sort, as in transformers).
fn merges(pieces: &[Piece], ids: &std::collections::HashMap<&str, usize>) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for piece in pieces {
        let mut local = Vec::new();
        for (split, _) in piece.text.char_indices().skip(1) {
            let (l, r) = piece.text.split_at(split);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                local.push((li, ri, l, r));
            }
        }
        local.sort_by_key(|&(li, ri, _, _)| (li, ri));
        all.extend(
            local
                .into_iter()
                .map(|(_, _, l, r)| (l.to_string(), r.to_string(), piece.score)),
        );
    }
    all.sort_by(|a, b| b.2.total_cmp(&a.2));
    all.into_iter().map(|(l, r, _)| (l, r)).collect()
}

/// Builds the tokenizer from the bytes of a `tokenizer.model`.
pub(crate) fn tokenizer_from_model(model: &[u8]) -> Result<Tokenizer, String> {
    let pieces = parse_pieces(model)?;
    let ids: std::collections::HashMap<&str, usize> =
        pieces.iter().enumerate().map(|(i, p)| (p.text.as_str(), i)).collect();
    let vocab: serde_json::Map<String, Value> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (p.text.clone(), json!(i)))
        .collect();
    let unk = pieces
        .iter()
        .find(|p| p.kind == UNKNOWN)
        .map_or("<unk>", |p| p.text.as_str());
    let added: Vec<Value> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == UNKNOWN || p.kind == CONTROL)
        .map(|(i, p)| {
            json!({"id": i, "content": p.text, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let bos = "<s>";
    let bos_id = *ids.get(bos).ok_or("no <s> piece")?;
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
        ]},
        "pre_tokenizer": null,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges(&pieces, &ids)
        }
    });
    spec.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| format!("building the tokenizer: {e}"))
}

/// Test support: encodes a `ModelProto` by hand.
#[cfg(test)]
pub(crate) mod proto {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// A `ModelProto` with the given `(piece, score, type)` entries and an unrelated field.
    pub(crate) fn model_proto(pieces: &[(&str, f32, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (text, score, kind) in pieces {
            let mut p = vec![0x0a];
            varint(text.len() as u64, &mut p);
            p.extend_from_slice(text.as_bytes());
            p.push(0x15);
            p.extend_from_slice(&score.to_le_bytes());
            p.push(0x18);
            varint(*kind, &mut p);
            out.push(0x0a);
            varint(p.len() as u64, &mut out);
            out.extend(p);
        }
        out.extend([0x12, 0x02, 0x18, 0x02]); // trainer_spec { model_type: BPE }, skipped
        out
    }
}

#[cfg(test)]
mod tests {
    use super::proto::model_proto;
    use super::*;

    #[test]
    fn merges_follow_piece_scores_and_bos_is_prepended() {
        let proto = model_proto(&[
            ("<unk>", 0.0, 2),
            ("<s>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("▁", -1.0, 1),
            ("a", -2.0, 1),
            ("b", -3.0, 1),
            ("▁a", -4.0, 1),
            ("ab", -5.0, 1),
            ("▁ab", -6.0, 1),
        ]);
        let tok = tokenizer_from_model(&proto).unwrap();
        assert_eq!(tok.encode("ab", true).unwrap().get_ids(), &[1, 8]);
        assert_eq!(tok.encode("ab b", false).unwrap().get_ids(), &[8, 3, 5]);
        assert_eq!(tok.decode(&[1, 8, 3, 5], true).unwrap(), "ab b");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(tokenizer_from_model(b"not a model").is_err());
    }
}
