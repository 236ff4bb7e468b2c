"""Write tinyllm_hvac/data/hvac_status.jsonl: HVAC questions with sensor readings, labelled Good/Bad.

The readings follow common rules of thumb for a cooling unit: a supply/return air temperature split
(delta-T) of 14-22 °F, a filter pressure drop under 0.8 inWC, compressor current at or under its
rating, suction pressure 55-75 psig (R-410A, cooling), no active alarm. A reading breaking a rule is
Bad, and the text says which number is off, as a technician's log would. Seeded: rerunning gives the
same file.

    python tools/make_sample.py > tinyllm_hvac/data/hvac_status.jsonl
"""
import json
import random

UNITS = ["RTU-1", "RTU-2", "RTU-3", "AHU-1", "AHU-2", "AHU-4", "heat pump HP-7", "split system SS-2",
         "the lobby unit", "the server room CRAC", "the gym rooftop unit", "chiller CH-1"]
QUESTIONS = ["Is {u} running normally?", "What is the status of {u}?", "Does {u} need service?",
             "How is {u} doing today?", "Check {u}: good or bad?", "Is {u} healthy?",
             "Any problem with {u}?", "Status report for {u}, please."]
ALARMS = ["high head pressure alarm", "low refrigerant alarm", "compressor overload trip",
          "condensate overflow switch open", "supply fan failure", "freeze stat tripped"]
NOTES_GOOD = ["no alarms", "all alarms clear", "no active faults", "alarms: none"]


def reading(rng: random.Random, bad: bool) -> str:
    supply = rng.randint(52, 58)
    dt = rng.randint(14, 22)
    filt = round(rng.uniform(0.2, 0.7), 2)
    rated = rng.choice([12, 16, 20, 24, 28])
    amps = round(rng.uniform(0.6, 0.95) * rated, 1)
    suction = rng.randint(58, 74)
    note = rng.choice(NOTES_GOOD)
    if bad:
        fault = rng.choice(["dt_low", "dt_high", "filter", "amps", "suction_low", "suction_high", "alarm"])
        if fault == "dt_low":
            dt = rng.randint(3, 10)
        elif fault == "dt_high":
            dt = rng.randint(27, 35)
        elif fault == "filter":
            filt = round(rng.uniform(0.95, 1.6), 2)
        elif fault == "amps":
            amps = round(rng.uniform(1.1, 1.4) * rated, 1)
        elif fault == "suction_low":
            suction = rng.randint(30, 48)
        elif fault == "suction_high":
            suction = rng.randint(85, 100)
        else:
            note = rng.choice(ALARMS)
    ret = supply + dt
    parts = [f"supply air {supply}°F", f"return air {ret}°F (delta-T {dt}°F)",
             f"filter dP {filt} inWC", f"compressor {amps} A of {rated} A rated",
             f"suction {suction} psig", note]
    return "Reading: " + ", ".join(parts) + "."


def main(n: int = 600, seed: int = 7) -> None:
    rng = random.Random(seed)
    for i in range(n):
        bad = i % 2 == 1
        unit = rng.choice(UNITS)
        text = reading(rng, bad)
        print(json.dumps({"question": rng.choice(QUESTIONS).format(u=unit), "reading": text,
                          "status": "Bad" if bad else "Good"}, ensure_ascii=False))


if __name__ == "__main__":
    main()
