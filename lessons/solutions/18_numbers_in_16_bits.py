"""Solutions to the exercises of lessons/18_numbers_in_16_bits.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: round_to_bfloat16
def my_round_to_bfloat16(x):
    # bfloat16 is the top 16 bits of a float32. Rounding adds half of the dropped range (0x7FFF),
    # plus 1 when the kept part is odd (a tie goes to the even neighbour), then drops the low
    # 16 bits. (NaN is left out.)
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    lsb = (bits >> 16) & 1                                  # the last bit that is kept
    return ((bits + 0x7FFF + lsb) >> 16).astype(np.uint16)

# %% exercise: scaler_update
def my_scaler_update(scale, good_steps, finite, growth_interval=2000):
    if not finite:
        return False, scale / 2, 0                          # skip the step, halve the scale
    good_steps += 1
    if good_steps == growth_interval:
        return True, scale * 2, 0                           # a long clean run: double it
    return True, scale, good_steps
