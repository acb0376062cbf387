"""Write a true caption for a scene, from many templates and synonyms.

Every caption names each object's colour and shape; size and position are said or left out at
random, and a two-object caption may say how the objects lie ("above", "to the left of"). Leaving
a thing out keeps a caption true; every word that is said comes from the scene. Words vary
(a "circle" is also a "disc", "small" is also "tiny", "top left" is also "upper left"), and so
does the sentence, so that the text tower has to learn language rather than slot positions.

    >>> from .scenes import ToyObject
    >>> red_circle = ToyObject(colour=0, shape=0, size=0, position=0, cx=7, cy=7, side=11,
    ...                        rgb=(230, 25, 25))
    >>> rng = np.random.default_rng(3)
    >>> [caption_for([red_circle], rng) for _ in range(3)]  # doctest: +SKIP
    ['a tiny red disc in the upper left', 'top left: a small red circle', 'a red circle']
"""

from __future__ import annotations

import numpy as np

from miniclip.datasets.attributes import COLOURS, POSITIONS, SHAPES, SIZES, fix_articles
from miniclip.datasets.scenes import ToyObject, relations

# Synonyms: the first word is the usual one and is picked half of the time (see ``_pick``).
COLOUR_WORDS = {name: (name,) for name in COLOURS} | {"purple": ("purple", "violet")}
SHAPE_WORDS = {
    "circle": ("circle", "disc", "disk", "round dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "star": ("star",),
    "hexagon": ("hexagon", "hex"),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign", "plus"),
}
SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big", "huge")}
# where an object is, said after it: "a red circle in the top left"
POSITION_PHRASES = {
    "top left": ("in the top left", "in the upper left", "in the top left corner",
                 "at the top left"),
    "top": ("at the top", "near the top", "in the top middle"),
    "top right": ("in the top right", "in the upper right", "in the top right corner",
                  "at the top right"),
    "left": ("on the left", "at the left", "on the left side"),
    "centre": ("in the centre", "in the center", "in the middle"),
    "right": ("on the right", "at the right", "on the right side"),
    "bottom left": ("in the bottom left", "in the lower left", "in the bottom left corner",
                    "at the bottom left"),
    "bottom": ("at the bottom", "near the bottom", "in the bottom middle"),
    "bottom right": ("in the bottom right", "in the lower right", "in the bottom right corner",
                     "at the bottom right"),
}  # fmt: skip
# the same places as labels: "top left: a red circle"
POSITION_LABELS = {
    "top left": ("top left", "upper left"),
    "top": ("top", "top middle"),
    "top right": ("top right", "upper right"),
    "left": ("left", "left side"),
    "centre": ("centre", "center", "middle"),
    "right": ("right", "right side"),
    "bottom left": ("bottom left", "lower left"),
    "bottom": ("bottom", "bottom middle"),
    "bottom right": ("bottom right", "lower right"),
}
RELATION_WORDS = {
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
    "left of": ("to the left of", "left of"),
    "right of": ("to the right of", "right of"),
}

# One object. {obj} is "[size ]colour shape"; {pos} a phrase from POSITION_PHRASES; {label} one
# from POSITION_LABELS. Templates without {pos}/{label} are used when the position is left out.
SINGLE_TEMPLATES = (
    "a {obj}",
    "a photo of a {obj}",
    "a picture of a {obj}",
    "an image with a {obj}",
    "there is a {obj}",
    "a {obj} shape",
    "one {obj}",
    "a single {obj} on a dark background",
    "the {shape} is {colour}",
    "a {colour} {shape} that is {size}",
)
SINGLE_TEMPLATES_WITH_POSITION = (
    "a {obj} {pos}",
    "{label}: a {obj}",
    "there is a {obj} {pos}",
    "{pos}, there is a {obj}",
    "{pos} is a {obj}",
    "a photo of a {obj} {pos}",
    "a picture of a {obj} {pos}",
    "an image with a {obj} {pos}",
    "the {shape} {pos} is {colour}",
    "a {colour} {shape} that is {size}, {pos}",
)
# Two objects. {a} and {b} are "[size ]colour shape"; {rel} comes from RELATION_WORDS and is true of
# a with respect to b; {pos_a} and {pos_b} are position phrases.
PAIR_TEMPLATES = (
    "a {a} and a {b}",
    "two shapes: a {a} and a {b}",
    "a {a} together with a {b}",
)
PAIR_TEMPLATES_WITH_RELATION = (
    "a {a} {rel} a {b}",
    "there is a {a} {rel} a {b}",
    "a photo of a {a} {rel} a {b}",
    "the {a} is {rel} the {b}",
)
PAIR_TEMPLATES_WITH_POSITION = (
    "a {a} {pos_a} and a {b} {pos_b}",
    "a {a} {pos_a}, a {b} {pos_b}",
)

P_SIZE = 0.5  # chance that an object's size is said
P_POSITION = 0.6  # chance that a single object's position is said
P_PERIOD = 0.3  # chance of a full stop at the end


def _pick(rng: np.random.Generator, words: tuple[str, ...], lockstep: bool = False) -> str:
    """The usual word (words[0]) half of the time, else any of them, uniformly.

    lockstep: always take two draws, however many words there are, so that two scenes that
    differ in one attribute ("red" has one word, "purple" two) are captioned in step from the
    same stream: the same template and synonyms for both (``negatives.py`` relies on it). Off
    for the stored dataset, whose captions stay those of dataset version 2.
    """
    if lockstep:
        usual, which = rng.random(2)
        return words[0] if len(words) == 1 or usual < 0.5 else words[int(which * len(words))]
    if len(words) == 1 or rng.random() < 0.5:
        return words[0]
    return words[rng.integers(len(words))]


def _noun_phrase(rng, obj: ToyObject, with_size: bool, lockstep: bool = False) -> str:
    colour = _pick(rng, COLOUR_WORDS[COLOURS[obj.colour]], lockstep)
    shape = _pick(rng, SHAPE_WORDS[SHAPES[obj.shape]], lockstep)
    if with_size:
        return f"{_pick(rng, SIZE_WORDS[SIZES[obj.size]], lockstep)} {colour} {shape}"
    return f"{colour} {shape}"


def _single_caption(rng, obj: ToyObject, lockstep: bool = False) -> str:
    position = POSITIONS[obj.position]
    templates = SINGLE_TEMPLATES_WITH_POSITION if rng.random() < P_POSITION else SINGLE_TEMPLATES
    template = templates[rng.integers(len(templates))]
    return template.format(
        obj=_noun_phrase(rng, obj, rng.random() < P_SIZE, lockstep),
        colour=_pick(rng, COLOUR_WORDS[COLOURS[obj.colour]], lockstep),
        shape=_pick(rng, SHAPE_WORDS[SHAPES[obj.shape]], lockstep),
        size=_pick(rng, SIZE_WORDS[SIZES[obj.size]], lockstep),
        pos=_pick(rng, POSITION_PHRASES[position], lockstep),
        label=_pick(rng, POSITION_LABELS[position], lockstep),
    )


def _pair_caption(rng, first: ToyObject, second: ToyObject, lockstep: bool = False) -> str:
    a, b = (first, second) if rng.random() < 0.5 else (second, first)  # either may be named first
    true_relations = relations(a, b)
    kind = rng.random()
    phrase_a = _noun_phrase(rng, a, rng.random() < P_SIZE, lockstep)
    phrase_b = _noun_phrase(rng, b, rng.random() < P_SIZE, lockstep)
    if kind < 0.5 and true_relations:
        relation = true_relations[rng.integers(len(true_relations))]
        template = PAIR_TEMPLATES_WITH_RELATION[rng.integers(len(PAIR_TEMPLATES_WITH_RELATION))]
        return template.format(a=phrase_a, b=phrase_b, rel=_pick(rng, RELATION_WORDS[relation], lockstep))
    if kind < 0.8:
        template = PAIR_TEMPLATES_WITH_POSITION[rng.integers(len(PAIR_TEMPLATES_WITH_POSITION))]
        return template.format(
            a=phrase_a,
            b=phrase_b,
            pos_a=_pick(rng, POSITION_PHRASES[POSITIONS[a.position]], lockstep),
            pos_b=_pick(rng, POSITION_PHRASES[POSITIONS[b.position]], lockstep),
        )
    template = PAIR_TEMPLATES[rng.integers(len(PAIR_TEMPLATES))]
    return template.format(a=phrase_a, b=phrase_b)


def caption_for(objects: list[ToyObject], rng: np.random.Generator,
                lockstep: bool = False) -> str:
    """A random true caption for a scene of one or two objects, lower case.

    Called again with another draw of ``rng`` it gives another caption of the same scene, so a
    training loop may re-caption images every epoch. lockstep: see ``_pick`` (hard negatives).
    """
    if len(objects) == 1:
        caption = _single_caption(rng, objects[0], lockstep)
    elif len(objects) == 2:
        caption = _pair_caption(rng, objects[0], objects[1], lockstep)
    else:
        raise ValueError(f"objects must hold 1 or 2 objects, got {len(objects)}")
    if rng.random() < P_PERIOD:
        caption += "."
    return fix_articles(caption)
