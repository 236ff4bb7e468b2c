"""Write tinyllm_stars/data/reviews.ft: short product reviews with 1-5 stars, in fastText format.

Each line is ``__label__N text``. Reviews are put together from phrases typical of each star level
(seeded, so rerunning gives the same file):

    python tools/make_sample.py > tinyllm_stars/data/reviews.ft
"""
import random

PRODUCTS = ["blender", "pair of headphones", "kettle", "backpack", "desk lamp", "phone case",
            "coffee grinder", "pair of running shoes", "keyboard", "tent", "toaster", "umbrella"]
FLAWS = ["the cord is short", "it is a bit loud", "the lid feels flimsy", "the battery drains fast",
         "the colour is off", "the buttons are stiff", "it scratches easily", "the manual is useless"]
GOODS = ["it looks nice", "setup was easy", "it is light", "the price is fair", "it feels sturdy",
         "delivery was quick"]
PHRASES = {
    5: ["Absolutely love this {p}.", "Best {p} I have ever owned.", "Works perfectly, worth every penny.",
        "Exceeded all my expectations.", "Would buy again in a heartbeat.", "Flawless, and {g}.",
        "Five stars, no complaints at all."],
    4: ["Very good {p}, only minor quibbles.", "Works well, though {f}.", "Solid {p} for the price.",
        "Happy with it overall; {g}.", "Does everything I need, but {f}.", "Good value, would recommend."],
    3: ["It's okay, I guess.", "An average {p} that does the job.", "Mixed feelings: {g} but {f}.",
        "Not bad, not great.", "Fine for occasional use.", "Some good points, some bad ones."],
    2: ["Disappointed with this {p}.", "Honestly {f}, and support was slow.", "Below my expectations.",
        "I would not buy it again.", "It works, barely, and {f}.", "Not worth the money."],
    1: ["Broke after two days.", "Complete waste of money.", "Terrible {p}, I returned it.",
        "Avoid this one.", "Arrived damaged and never worked.", "The worst {p} I have bought."],
}


def review(rng: random.Random, stars: int) -> str:
    """1-3 phrases of the review's level; a quarter of the time one comes from a neighbouring level
    (people are not consistent), so near misses happen and the ordinal metrics have work to do."""
    p = rng.choice(PRODUCTS)
    picks = rng.sample(PHRASES[stars], k=rng.randint(1, 3))
    if rng.random() < 0.25:
        near = [s for s in (stars - 1, stars + 1) if s in PHRASES]
        picks[rng.randrange(len(picks))] = rng.choice(PHRASES[rng.choice(near)])
    return " ".join(s.format(p=p, f=rng.choice(FLAWS), g=rng.choice(GOODS)) for s in picks)


def main(per_class: int = 40, seed: int = 11) -> None:
    rng = random.Random(seed)
    rows = [(s, review(rng, s)) for s in range(1, 6) for _ in range(per_class)]
    rng.shuffle(rows)
    for s, text in rows:
        print(f"__label__{s} {text}")


if __name__ == "__main__":
    main()
