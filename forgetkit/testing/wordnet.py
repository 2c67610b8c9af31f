"""WordNet 3.0 for nltk, assembled offline from Debian's `wordnet-base` and `wordnet-sense-index` packages.

ImageNet classes are WordNet noun synsets (`n02084071` = dog), so WordNet distance is an
independent check that CLIP-hard distractors are semantically close to the truth. Debian ships
the database files but not `lexnames`, which nltk insists on; it is rebuilt from the man page
Debian ships beside them.
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

DEBIAN_WORDNET = Path("/usr/share/wordnet")
LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def available() -> bool:
    """nltk's reader needs the database, `index.sense` (a package of its own on Debian) and the lexnames table."""
    return all((DEBIAN_WORDNET / name).is_file() for name in ("data.noun", "index.sense")) and LEXNAMES_MAN.is_file()


def nltk_wordnet(nltk_data: Path):
    """An nltk WordNet reader over a copy of Debian's files in `nltk_data/corpora/wordnet`."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if str(nltk_data) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_data))  # nltk refuses corpus roots outside its data path
    root = nltk_data / "corpora" / "wordnet"
    if not (root / "lexnames").is_file():
        shutil.copytree(DEBIAN_WORDNET, root, dirs_exist_ok=True)
        (root / "lexnames").write_text(_lexnames(), encoding="utf-8")
    return WordNetCorpusReader(str(root), None)


def _lexnames() -> str:
    """`NN<TAB>file name<TAB>category` lines, from the table in lexnames(5WN)."""
    text = gzip.decompress(LEXNAMES_MAN.read_bytes()).decode("utf-8", errors="replace")
    rows = re.findall(r"^(\d\d)\t(\w+\.\w+)", text, flags=re.MULTILINE)
    return "".join(f"{number}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for number, name in rows)
