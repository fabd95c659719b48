-- The elections epcs knows (SPEC section 2). Commission staff add an election here when it is
-- called; by-elections and vacancy elections carry the day their cause was confirmed, which
-- moves the start of several windows and deadlines (Arts. 60, 93(1), 103; NEC practice for
-- 82-8, 93(2) and 111). Every by- or vacancy election carries that day, with its source; races
-- held on one day for causes confirmed on different days are separate elections, one id each.
--
--   kind:   general | by_election | vacancy
--   office: president | national_assembly | local_office (a nationwide local election: every
--           local race) | local_government_head | local_council (one local race)

return epcs.elections {
    -- The 2021-04-07 re- and by-elections were two mayoral races with different causes (and
    -- council races epcs does not list).
    {
        -- Cause: Mayor Oh Keo-don resigned on 2020-04-23, after the by-elections of 2020-04-15
        -- had closed, so the race went to 2021-04-07 (Art. 35(2)1).
        id = "byel2021_busan", kind = "by_election", office = "local_government_head",
        day = "2021-04-07", cause_confirmed = "2020-04-23",
        name = "2021 Busan mayoral by-election", name_ko = "2021년 부산광역시장 보궐선거",
    },
    {
        -- Cause: Mayor Park Won-soon died; the office fell vacant on 2020-07-10.
        id = "byel2021_seoul", kind = "by_election", office = "local_government_head",
        day = "2021-04-07", cause_confirmed = "2020-07-10",
        name = "2021 Seoul mayoral by-election", name_ko = "2021년 서울특별시장 보궐선거",
    },
    {
        -- Day fixed by Art. 34(1)1 for the term ending 2022-05-09.
        id = "pres20", kind = "general", office = "president", day = "2022-03-09",
        name = "20th presidential election", name_ko = "제20대 대통령선거",
    },
    {
        -- Day fixed by Art. 34(1)3 for the terms ending 2022-06-30.
        id = "local8", kind = "general", office = "local_office", day = "2022-06-01",
        name = "8th nationwide local elections", name_ko = "제8회 전국동시지방선거",
    },
    {
        -- Day fixed by Art. 34(1)2 for the 21st Assembly's term ending 2024-05-29.
        id = "na22", kind = "general", office = "national_assembly", day = "2024-04-10",
        name = "22nd National Assembly election", name_ko = "제22대 국회의원선거",
    },
    {
        -- Cause: County Head Yoo Cheon-ho died on 2024-03-09. A cause confirmed from March to
        -- August goes to October's by-election day (Art. 35(2)1), here 2024-10-16.
        id = "ganghwa2024", kind = "by_election", office = "local_government_head",
        day = "2024-10-16", cause_confirmed = "2024-03-09",
        name = "Ganghwa county head by-election", name_ko = "강화군수 보궐선거",
    },
    {
        -- Cause: the Constitutional Court removed the President from office on 2025-04-04; the
        -- election followed within 60 days (Art. 35(1)).
        id = "pres21", kind = "vacancy", office = "president", day = "2025-06-03",
        cause_confirmed = "2025-04-04",
        name = "21st presidential election (vacancy)", name_ko = "제21대 대통령선거(궐위선거)",
    },
    {
        -- Day fixed by Art. 34(1)3 for the terms ending 2026-06-30.
        id = "local9", kind = "general", office = "local_office", day = "2026-06-03",
        name = "9th nationwide local elections", name_ko = "제9회 전국동시지방선거",
    },
    {
        -- Day fixed by Art. 34(1)2 for the 22nd Assembly's term ending 2028-05-29.
        id = "na23", kind = "general", office = "national_assembly", day = "2028-04-12",
        name = "23rd National Assembly election", name_ko = "제23대 국회의원선거",
    },
}
