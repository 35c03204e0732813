"""The reference article gives exactly its expected groups, by line number."""

import dedup

EXPECTED = [
    ((1, 3), {"exact"}),  # the title, doubled
    ((7, 34), {"near", "contained"}),  # the statement restated, a glued word in one copy
    ((9, 36), {"contained"}),  # the quote embedded in a longer paragraph
    ((13, 38), {"contained"}),  # a shortened copy
    ((25, 26), {"exact"}),  # the photo caption, doubled
]


def test_find_repeats_gives_exactly_the_five_groups(seed_text):
    groups = dedup.find_repeats(seed_text)
    assert [g.lines for g in groups] == [lines for lines, _ in EXPECTED]
    for group, (lines, kinds) in zip(groups, EXPECTED):
        assert group.representative.line == lines[0]
        (repeat,) = group.repeats
        assert repeat.kind in kinds
        assert repeat.similarity >= 0.8
        for member in group.members:
            assert seed_text[member.start:member.end] == member.text
            assert seed_text.count("\n", 0, member.start) + 1 == member.line


def test_caption_inside_line_19_is_too_short_to_be_a_repeat(seed_text):
    caption = "المتحدث باسم الكرملين ديمتري بيسكوف"
    line_19 = seed_text.splitlines()[18]
    assert caption in line_19
    assert all(19 not in g.lines for g in dedup.find_repeats(seed_text))
    loose = dedup.Config(min_contained_length=10)
    assert any(19 in g.lines for g in dedup.find_repeats(seed_text, loose))


def test_collapse_removes_exactly_the_repeats(seed_text):
    collapsed = dedup.collapse(seed_text)
    original_lines = seed_text.split("\n")
    removed = {3, 26, 34, 36, 38}
    kept = [line for number, line in enumerate(original_lines, 1)
            if line.strip() and number not in removed]
    assert [line for line in collapsed.split("\n") if line.strip()] == kept
    assert "\n\n\n" not in collapsed
    # a removed line goes with the line break (and blank line) before it, so the separation
    # between the remaining paragraphs is the original one
    drop = set()
    for number in removed:
        drop.add(number)
        if original_lines[number - 2] == "":
            drop.add(number - 1)
    expected = "\n".join(line for number, line in enumerate(original_lines, 1)
                         if number not in drop)
    assert collapsed == expected


def test_collapse_with_keep_longest_keeps_the_containers(seed_text):
    collapsed = dedup.collapse(seed_text, keep="longest")
    lines = collapsed.split("\n")
    original = seed_text.split("\n")
    for container in (7, 9, 13):
        assert original[container - 1] in lines


def test_flag_marks_every_paragraph_in_order(seed_text):
    flags = dedup.flag(seed_text)
    assert [f.line for f in flags] == [n for n, line in enumerate(seed_text.split("\n"), 1)
                                       if line.strip()]
    repeats = {f.line: f.repeats_line for f in flags if f.is_repeat}
    assert repeats == {3: 1, 26: 25, 34: 7, 36: 9, 38: 13}
